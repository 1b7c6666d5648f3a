/* runtime/core/file.c - opening a file the library is told to read.
 *
 * Every path that comes from a caller or a document (a manifest, the weights
 * it names, a safetensors file) is opened here, so that what is not a
 * regular file is refused before anything reads it: /dev/zero would hash
 * forever, a FIFO would block open() until a writer comes, a directory reads
 * as an error only later. O_NONBLOCK makes open() itself return at once for a
 * FIFO; the mode is checked on the descriptor (no window between a stat and
 * the open); the flag is then cleared, which a regular file ignores anyway.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#ifndef O_NOCTTY
#define O_NOCTTY 0
#endif

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "something else";
}

nnm_status nnm__open_regular(nnm_ctx *ctx, const char *path, const char *what, int *fd_out,
                             uint64_t *size) {
    char pb[NNM__SHOW_PATH];
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return nnm__error(ctx, NNM_E_IO, "%s: cannot open%s%s: %s",
                          nnm__show_path(path, pb, sizeof pb), what ? " " : "", what ? what : "",
                          strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return nnm__error(ctx, NNM_E_IO, "%s: cannot stat: %s", nnm__show_path(path, pb, sizeof pb),
                          strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return nnm__error(ctx, NNM_E_IO, "%s: is %s, not a regular file%s%s",
                          nnm__show_path(path, pb, sizeof pb), kind_of(sb.st_mode),
                          what ? " " : "", what ? what : "");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    if (size) *size = (uint64_t)sb.st_size;
    return NNM_OK;
}
