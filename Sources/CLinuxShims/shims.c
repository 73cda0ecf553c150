#define _GNU_SOURCE
#include "CLinuxShims.h"

int sy_accept4(int fd, struct sockaddr_storage *address) {
    socklen_t length = sizeof(*address);
    return accept4(fd, (struct sockaddr *)address, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int sy_set_thread_name(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}
