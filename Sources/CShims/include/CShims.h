#ifndef CSHIMS_H
#define CSHIMS_H
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

/// accept4(2) with the given SOCK_* flags; Glibc's Swift module hides it.
int cshims_accept4(int fd, int flags);
/// splice(2) between two descriptors (one must be a pipe), SPLICE_F_MOVE | SPLICE_F_NONBLOCK.
ssize_t cshims_splice(int fd_in, int fd_out, size_t len);
/// pipe2(2) with O_NONBLOCK | O_CLOEXEC.
int cshims_pipe_nonblocking(int fds[2]);
/// Resizes a pipe (F_SETPIPE_SZ); returns the new size or -1.
int cshims_set_pipe_size(int fd, int size);

/// epoll event bits as plain integers (the Swift import of the enum is awkward).
static const uint32_t cshims_epoll_in = EPOLLIN;
static const uint32_t cshims_epoll_out = EPOLLOUT;
static const uint32_t cshims_epoll_rdhup = EPOLLRDHUP;
static const uint32_t cshims_epoll_err = EPOLLERR;
static const uint32_t cshims_epoll_hup = EPOLLHUP;

#endif
