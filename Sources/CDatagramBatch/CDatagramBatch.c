// recvmmsg(2), sendmmsg(2) and sendto(2) for TURNServer's relay path (DatagramDrain,
// DatagramSendBatch, UDPSocket). Written by hand because Swift's Glibc module hides recvmmsg,
// sendmmsg and struct mmsghdr behind _GNU_SOURCE, and NIO's own wrapper (CNIOLinux) is not
// one of its products.
//
// On Linux the calls go through syscall(2) rather than glibc's wrappers: those are POSIX
// cancellation points, and enabling and disabling asynchronous cancellation around every call
// (__pthread_enable/disable_asynccancel) was ≈ 1 % of a busy TURN node's CPU; nothing here
// uses thread cancellation. Measured in Docs/turn.md ("Performance").
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include "CDatagramBatch.h"

struct CDatagramBatch {
    unsigned int capacity;
#ifdef __linux__
    struct mmsghdr *messages;
#endif
    struct iovec *vectors;
    struct sockaddr_storage *sources;
};

CDatagramBatch *CDatagramBatch_create(unsigned int capacity) {
    CDatagramBatch *batch = calloc(1, sizeof(CDatagramBatch));
    if (batch == NULL) return NULL;
    batch->capacity = capacity;
#ifdef __linux__
    batch->messages = calloc(capacity, sizeof(struct mmsghdr));
#endif
    batch->vectors = calloc(capacity, sizeof(struct iovec));
    batch->sources = calloc(capacity, sizeof(struct sockaddr_storage));
    if (batch->vectors == NULL || batch->sources == NULL
#ifdef __linux__
        || batch->messages == NULL
#endif
    ) {
        CDatagramBatch_destroy(batch);
        return NULL;
    }
    return batch;
}

void CDatagramBatch_destroy(CDatagramBatch *batch) {
    if (batch == NULL) return;
#ifdef __linux__
    free(batch->messages);
#endif
    free(batch->vectors);
    free(batch->sources);
    free(batch);
}

int CDatagramBatch_receive(CDatagramBatch *batch, int descriptor, unsigned char *base, size_t slotSize, unsigned int count) {
#ifdef __linux__
    if (count > batch->capacity) count = batch->capacity;
    for (unsigned int index = 0; index < count; index++) {
        batch->vectors[index].iov_base = base + (size_t)index * slotSize;
        batch->vectors[index].iov_len = slotSize;
        struct msghdr *header = &batch->messages[index].msg_hdr;
        memset(header, 0, sizeof(*header));
        header->msg_name = &batch->sources[index];
        header->msg_namelen = sizeof(struct sockaddr_storage);
        header->msg_iov = &batch->vectors[index];
        header->msg_iovlen = 1;
        batch->messages[index].msg_len = 0;
    }
    return (int)syscall(SYS_recvmmsg, descriptor, batch->messages, count, MSG_DONTWAIT, NULL);
#else
    (void)batch; (void)descriptor; (void)base; (void)slotSize; (void)count;
    errno = ENOSYS;
    return -1;
#endif
}

long CDatagramBatch_length(const CDatagramBatch *batch, unsigned int index) {
#ifdef __linux__
    if (index >= batch->capacity || (batch->messages[index].msg_hdr.msg_flags & MSG_TRUNC)) return -1;
    return (long)batch->messages[index].msg_len;
#else
    (void)batch; (void)index;
    return -1;
#endif
}

const void *CDatagramBatch_source(const CDatagramBatch *batch, unsigned int index) {
    return &batch->sources[index < batch->capacity ? index : 0];
}


long CDatagramBatch_sendto(int descriptor, const void *bytes, size_t length, const void *address, unsigned int addressLength) {
#ifdef __linux__
    return syscall(SYS_sendto, descriptor, bytes, length, MSG_DONTWAIT, address, (socklen_t)addressLength);
#else
    return (long)sendto(descriptor, bytes, length, MSG_DONTWAIT, (const struct sockaddr *)address, (socklen_t)addressLength);
#endif
}

struct CDatagramSendBatch {
    unsigned int capacity;
    unsigned int count;
    size_t slotSize;
    unsigned char *slots;
#ifdef __linux__
    struct mmsghdr *messages;
#endif
    struct iovec *vectors;
    struct sockaddr_storage *destinations;
};

CDatagramSendBatch *CDatagramSendBatch_create(unsigned int capacity, size_t slotSize) {
    CDatagramSendBatch *batch = calloc(1, sizeof(CDatagramSendBatch));
    if (batch == NULL) return NULL;
    batch->capacity = capacity;
    batch->slotSize = slotSize;
    batch->slots = malloc((size_t)capacity * slotSize);
#ifdef __linux__
    batch->messages = calloc(capacity, sizeof(struct mmsghdr));
#endif
    batch->vectors = calloc(capacity, sizeof(struct iovec));
    batch->destinations = calloc(capacity, sizeof(struct sockaddr_storage));
    if (batch->slots == NULL || batch->vectors == NULL || batch->destinations == NULL
#ifdef __linux__
        || batch->messages == NULL
#endif
    ) {
        CDatagramSendBatch_destroy(batch);
        return NULL;
    }
    for (unsigned int index = 0; index < capacity; index++) {
        batch->vectors[index].iov_base = batch->slots + (size_t)index * slotSize;
#ifdef __linux__
        struct msghdr *header = &batch->messages[index].msg_hdr;
        header->msg_name = &batch->destinations[index];
        header->msg_iov = &batch->vectors[index];
        header->msg_iovlen = 1;
#endif
    }
    return batch;
}

void CDatagramSendBatch_destroy(CDatagramSendBatch *batch) {
    if (batch == NULL) return;
    free(batch->slots);
#ifdef __linux__
    free(batch->messages);
#endif
    free(batch->vectors);
    free(batch->destinations);
    free(batch);
}

unsigned int CDatagramSendBatch_count(const CDatagramSendBatch *batch) {
    return batch->count;
}

unsigned char *CDatagramSendBatch_nextSlot(CDatagramSendBatch *batch) {
    if (batch->count >= batch->capacity) return NULL;
    return batch->slots + (size_t)batch->count * batch->slotSize;
}

int CDatagramSendBatch_commit(CDatagramSendBatch *batch, size_t length, const void *address, unsigned int addressLength) {
    if (batch->count >= batch->capacity || length > batch->slotSize || addressLength > sizeof(struct sockaddr_storage)) return -1;
    unsigned int index = batch->count;
    batch->vectors[index].iov_len = length;
    memcpy(&batch->destinations[index], address, addressLength);
#ifdef __linux__
    batch->messages[index].msg_hdr.msg_namelen = (socklen_t)addressLength;
#endif
    batch->count = index + 1;
    return (int)(batch->capacity - batch->count);
}

unsigned int CDatagramSendBatch_flush(CDatagramSendBatch *batch, int descriptor) {
    unsigned int count = batch->count;
    unsigned int next = 0;
    unsigned int sent = 0;
    batch->count = 0;
    while (next < count) {
#ifdef __linux__
        long result = syscall(SYS_sendmmsg, descriptor, batch->messages + next, count - next, MSG_DONTWAIT);
#else
        struct iovec *vector = &batch->vectors[next];
        long result = sendto(descriptor, vector->iov_base, vector->iov_len, MSG_DONTWAIT,
            (const struct sockaddr *)&batch->destinations[next], batch->destinations[next].ss_family == AF_INET6
                ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) >= 0 ? 1 : -1;
#endif
        if (result > 0) {
            next += (unsigned int)result;
            sent += (unsigned int)result;
        } else {
            // The datagram at `next` was refused (a full socket buffer, an unreachable
            // destination): it is dropped, as a router would, and the rest still go.
            next += 1;
        }
    }
    return sent;
}
