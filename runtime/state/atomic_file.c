/* runtime/state/atomic_file.c - replacing a file so that a crash leaves the old one
 * or the new one, never a torn one: write "<path>.tmp.<pid>" in the same
 * directory, fsync it, rename it over path, fsync the directory. Used by the
 * safetensors writer and by manifests. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static const char *errno_str(int e, char *buf, size_t cap) {
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "errno %d", e);
    return buf;
}

int nnm__write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding path (so the rename is durable). */
static int fsync_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else {
        dir = malloc((size_t)(slash - path) + 1);
        if (dir) memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = 0;
    }
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    free(dir);
    if (fd < 0) return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems cannot sync a directory; the rename stands. */
    if (r != 0 && (e == EINVAL || e == ENOTSUP || e == EROFS)) r = 0;
    errno = e;
    return r;
}

nnm_status nnm__atomic_open(nnm_ctx *ctx, const char *path, nnm__atomic *a) {
    char eb[128];
    a->fd = -1;
    a->path = path;
    a->tmp = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return nnm__error(ctx, NNM_E_IO, "%s: is a directory", path);
    size_t plen = strlen(path);
    a->tmp = malloc(plen + 64);
    if (!a->tmp) return nnm__error(ctx, NNM_E_NOMEM, "%s: out of memory", path);
    for (int attempt = 0; attempt < 100 && a->fd < 0; attempt++) {
        if (attempt == 0)
            snprintf(a->tmp, plen + 64, "%s.tmp.%ld", path, (long)getpid());
        else
            snprintf(a->tmp, plen + 64, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (a->fd < 0 && errno != EEXIST) break;
    }
    if (a->fd < 0) {
        nnm_status st = nnm__error(ctx, NNM_E_IO, "%s: cannot create a temporary file beside it: %s",
                                   path, errno_str(errno, eb, sizeof eb));
        free(a->tmp);
        a->tmp = NULL;
        return st;
    }
    return NNM_OK;
}

void nnm__atomic_abort(nnm__atomic *a) {
    if (a->fd >= 0) close(a->fd);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    a->fd = -1;
    a->tmp = NULL;
}

nnm_status nnm__atomic_commit(nnm_ctx *ctx, nnm__atomic *a) {
    char eb[128];
    nnm_status rc = NNM_OK;
    if (fsync(a->fd) != 0)
        rc = nnm__error(ctx, NNM_E_IO, "%s: fsync: %s", a->path, errno_str(errno, eb, sizeof eb));
    int fd = a->fd;
    a->fd = -1;
    if (close(fd) != 0 && !rc)
        rc = nnm__error(ctx, NNM_E_IO, "%s: close: %s", a->path, errno_str(errno, eb, sizeof eb));
    if (!rc && rename(a->tmp, a->path) != 0)
        rc = nnm__error(ctx, NNM_E_IO, "%s: cannot rename the temporary file into place: %s",
                        a->path, errno_str(errno, eb, sizeof eb));
    if (rc) {
        nnm__atomic_abort(a);
        return rc;
    }
    free(a->tmp);
    a->tmp = NULL;
    if (fsync_dir_of(a->path) != 0)
        return nnm__error(ctx, NNM_E_IO,
                          "%s: written, but the fsync of its directory failed (the rename may "
                          "not be durable): %s",
                          a->path, errno_str(errno, eb, sizeof eb));
    return NNM_OK;
}
