#define _GNU_SOURCE
#include "CShims.h"
#include <sys/socket.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/uio.h>
#include <pthread.h>
#include <sched.h>

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

void cshims_name_this_thread(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

ssize_t cshims_send_fds(int sock, const int *fds, int count, const void *data, size_t length) {
    struct iovec iov = { .iov_base = (void *)data, .iov_len = length };
    struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1 };
    size_t space = CMSG_SPACE(sizeof(int) * (size_t)count);
    char *control = NULL;
    if (count > 0) {
        control = calloc(1, space);
        if (control == NULL) return -1;
        message.msg_control = control;
        message.msg_controllen = space;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * (size_t)count);
    }
    ssize_t sent = sendmsg(sock, &message, MSG_NOSIGNAL);
    free(control);
    return sent;
}

ssize_t cshims_recv_fds(int sock, int *fds, int max, int *count, void *data, size_t length) {
    struct iovec iov = { .iov_base = data, .iov_len = length };
    struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1 };
    size_t space = CMSG_SPACE(sizeof(int) * (size_t)max);
    char *control = calloc(1, space);
    if (control == NULL) return -1;
    message.msg_control = control;
    message.msg_controllen = space;
    *count = 0;
    ssize_t received = recvmsg(sock, &message, MSG_CMSG_CLOEXEC);
    if (received >= 0) {
        for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
            if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
            int n = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < n && *count < max; i++) memcpy(&fds[(*count)++], CMSG_DATA(header) + sizeof(int) * (size_t)i, sizeof(int));
        }
    }
    free(control);
    return received;
}

int cshims_allowed_cpus(int *cpus, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < max; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}

int cshims_pin_this_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}
