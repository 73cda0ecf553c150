#define _GNU_SOURCE
#include "CLinuxShims.h"

int sy_accept4(int fd, struct sockaddr_storage *address) {
    socklen_t length = sizeof(*address);
    return accept4(fd, (struct sockaddr *)address, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int sy_set_thread_name(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}

#include <stddef.h>
#include <sys/un.h>

int sy_notify_send(const char *path, const char *message) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(address.sun_path)) return -1;
    memcpy(address.sun_path, path, length);
    // "@name" is an abstract socket: its first byte is NUL.
    if (address.sun_path[0] == '@') address.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t sent = sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&address,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length));
    int saved = errno;
    close(fd);
    errno = saved;
    return sent < 0 ? -1 : 0;
}
