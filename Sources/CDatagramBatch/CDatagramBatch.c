// recvmmsg(2) for TURNServer's DatagramDrain. Written by hand because Swift's Glibc module
// hides recvmmsg and struct mmsghdr behind _GNU_SOURCE, and NIO's own wrapper (CNIOLinux)
// is not one of its products.
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
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
    return recvmmsg(descriptor, batch->messages, count, MSG_DONTWAIT, NULL);
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

