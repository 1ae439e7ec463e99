#define _GNU_SOURCE
#include "CShims.h"
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

int cshims_accept4(int fd, int flags) {
    return accept4(fd, NULL, NULL, flags);
}

ssize_t cshims_splice(int fd_in, int fd_out, size_t len) {
    return splice(fd_in, NULL, fd_out, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

int cshims_pipe_nonblocking(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

int cshims_set_pipe_size(int fd, int size) {
    return fcntl(fd, F_SETPIPE_SZ, size);
}
