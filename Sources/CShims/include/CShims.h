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
/// Names the calling thread (at most 15 bytes are kept) for top, ps and perf: pthread_setname_np,
/// which Glibc's module hides.
void cshims_name_this_thread(const char *name);

/// The CPUs the calling thread may run on (sched_getaffinity), ascending, at most `max` of them in
/// `cpus`; returns how many, or -1 on failure.
int cshims_allowed_cpus(int *cpus, int max);

/// Binds the calling thread to one CPU (pthread_setaffinity_np); 0 on success, else an errno.
int cshims_pin_this_thread(int cpu);

/// Sends `length` bytes of `data` with `count` descriptors attached (SCM_RIGHTS) on a Unix
/// stream socket, in one sendmsg(2); returns the bytes sent or -1 (errno set).
ssize_t cshims_send_fds(int sock, const int *fds, int count, const void *data, size_t length);
/// Receives one message and up to `max` descriptors (SCM_RIGHTS, made close-on-exec); `*count` is
/// set to how many came. Returns the bytes received or -1 (errno set).
ssize_t cshims_recv_fds(int sock, int *fds, int max, int *count, void *data, size_t length);

/// epoll event bits as plain integers (the Swift import of the enum is awkward).
static const uint32_t cshims_epoll_in = EPOLLIN;
static const uint32_t cshims_epoll_out = EPOLLOUT;
static const uint32_t cshims_epoll_rdhup = EPOLLRDHUP;
static const uint32_t cshims_epoll_err = EPOLLERR;
static const uint32_t cshims_epoll_hup = EPOLLHUP;

#endif
