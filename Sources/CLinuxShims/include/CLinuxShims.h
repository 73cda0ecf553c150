#ifndef SWITCHYARD_CLINUXSHIMS_H
#define SWITCHYARD_CLINUXSHIMS_H


#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

// epoll_event is packed on x86_64; these accessors keep Swift away from its layout.
static inline void sy_epoll_event_set(struct epoll_event *ev, uint32_t events, uint64_t data) {
    ev->events = events;
    ev->data.u64 = data;
}
static inline uint32_t sy_epoll_event_events(const struct epoll_event *ev, int index) {
    return ev[index].events;
}
static inline uint64_t sy_epoll_event_data(const struct epoll_event *ev, int index) {
    return ev[index].data.u64;
}
static inline int sy_errno(void) { return errno; }

/// accept4 and pthread_setname_np need _GNU_SOURCE, which must not leak into this header:
/// it changes system struct definitions that other modules import too. They live in shims.c.
int sy_accept4(int fd, struct sockaddr_storage *address);
int sy_set_thread_name(pthread_t thread, const char *name);
/// One sd_notify(3) datagram ("READY=1", …) to the socket at `path` (from NOTIFY_SOCKET; a
/// leading '@' is an abstract socket). 0 when sent.
int sy_notify_send(const char *path, const char *message);
static inline int sy_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
static inline int sy_timerfd(void) { return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }
static inline int sy_inotify(void) { return inotify_init1(IN_NONBLOCK | IN_CLOEXEC); }

/// Monotonic milliseconds (CLOCK_MONOTONIC_COARSE: a vDSO read, no syscall, ~4 ms resolution).
static inline uint64_t sy_monotonic_ms_coarse(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
static inline uint64_t sy_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/// Blocks the signals the control thread receives through signalfd, in the calling thread
/// and every thread it starts afterwards.
static inline int sy_block_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGPIPE);
    return pthread_sigmask(SIG_BLOCK, set, NULL);
}

#endif
