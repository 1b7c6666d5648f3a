/* runtime/state/atomic_file.c - replacing a file so that a crash leaves the old one
 * or the new one, never a torn one: write "<path>.tmp.<pid>" in the same
 * directory, fsync it, rename it over path, fsync the directory. Used by the
 * safetensors writer and by manifests. */
#define _XOPEN_SOURCE 700 /* realpath */
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

/* A symbolic link is written through, as open(path, "w") would (torch.save,
 * safetensors' save_file): the link stays and its target is replaced (a
 * dangling link is replaced itself). The new file keeps the permission bits
 * of the one it replaces: a checkpoint made private (0600) stays private. */
nnm_status nnm__atomic_open(nnm_ctx *ctx, const char *path, nnm__atomic *a) {
    char eb[128];
    a->fd = -1;
    a->path = path;
    a->tmp = NULL;
    a->real = NULL;
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode) && (a->real = realpath(path, NULL)))
        path = a->path = a->real;
    int old = stat(path, &sb) == 0;
    if (old && S_ISDIR(sb.st_mode)) {
        nnm_status st = nnm__error(ctx, NNM_E_IO, "%s: is a directory", path);
        nnm__atomic_abort(a);
        return st;
    }
    size_t plen = strlen(path);
    a->tmp = malloc(plen + 64);
    if (!a->tmp) {
        nnm__atomic_abort(a);
        return nnm__error(ctx, NNM_E_NOMEM, "%s: out of memory", path);
    }
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
        nnm__atomic_abort(a);
        return st;
    }
    if (old && S_ISREG(sb.st_mode) && fchmod(a->fd, sb.st_mode & 07777) != 0) {
        nnm_status st = nnm__error(ctx, NNM_E_IO,
                                   "%s: cannot give the temporary file the permissions of the file it "
                                   "replaces: %s",
                                   path, errno_str(errno, eb, sizeof eb));
        nnm__atomic_abort(a);
        return st;
    }
    return NNM_OK;
}

void nnm__atomic_abort(nnm__atomic *a) {
    if (a->fd >= 0) close(a->fd);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->real);
    a->fd = -1;
    a->tmp = NULL;
    a->real = NULL;
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
        rc = nnm__error(ctx, NNM_E_IO,
                        "%s: written, but the fsync of its directory failed (the rename may "
                        "not be durable): %s",
                        a->path, errno_str(errno, eb, sizeof eb));
    free(a->real);
    a->real = NULL;
    return rc;
}
