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
#include <stdint.h>
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
    // The headers of the first `prepared` messages point into `preparedBase` already (the
    // drain reuses one buffer): a call sets up only what the kernel changed. The kernel
    // writes back each filled header's name length, flags and control length, and the
    // message length; it leaves the iovecs and the pointers alone.
    unsigned char *preparedBase;
    size_t preparedSlotSize;
    unsigned int prepared;
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
    if (base != batch->preparedBase || slotSize != batch->preparedSlotSize) {
        batch->preparedBase = base;
        batch->preparedSlotSize = slotSize;
        batch->prepared = 0;
    }
    for (unsigned int index = 0; index < count; index++) {
        struct msghdr *header = &batch->messages[index].msg_hdr;
        if (index >= batch->prepared) {
            batch->vectors[index].iov_base = base + (size_t)index * slotSize;
            batch->vectors[index].iov_len = slotSize;
            memset(header, 0, sizeof(*header));
            header->msg_name = &batch->sources[index];
            header->msg_iov = &batch->vectors[index];
            header->msg_iovlen = 1;
        }
        header->msg_namelen = sizeof(struct sockaddr_storage);
        header->msg_flags = 0;
        batch->messages[index].msg_len = 0;
    }
    if (count > batch->prepared) batch->prepared = count;
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

#ifdef __linux__
#include <netinet/udp.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#endif

// Generic segmentation offload (UDP_SEGMENT, Linux 4.18+): a run of datagrams to one
// destination, all of one size but the last (which may be shorter), goes to the kernel as one
// message and crosses the IP stack once; it is cut into datagrams at the device (or, on
// loopback, at the receiving socket). Runs are common for a TURN node: the datagrams drained
// from one relay socket in a wake-up all go to that allocation's client.
// Segments of at most 1,400 bytes only, so that segment and headers fit a 1,500-byte MTU (the
// kernel refuses a segment larger than the path MTU); at most 64 segments and 60,000 bytes
// per run (the kernel's limits: UDP_MAX_SEGMENTS, a 64 KiB datagram).
enum { segmentMaxSize = 1400, segmentMaxCount = 64, segmentMaxTotal = 60000, segmentFailureLimit = 8 };

struct CDatagramSendBatch {
    unsigned int capacity;
    unsigned int count;
    size_t slotSize;
    unsigned char *slots;
    struct iovec *vectors;
    struct sockaddr_storage *destinations;
    unsigned int *addressLengths;
#ifdef __linux__
    // the messages as sent: one per datagram, or one per run with a UDP_SEGMENT control message
    struct mmsghdr *wire;
    unsigned int *wireFirst;
    unsigned int *wireCount;
    unsigned char *controls;
    int segmentation;
    unsigned int segmentationFailures;
#endif
    unsigned long segmented;
};

#ifdef __linux__
static const size_t controlSpace = CMSG_SPACE(sizeof(uint16_t));
#endif

CDatagramSendBatch *CDatagramSendBatch_create(unsigned int capacity, size_t slotSize) {
    CDatagramSendBatch *batch = calloc(1, sizeof(CDatagramSendBatch));
    if (batch == NULL) return NULL;
    batch->capacity = capacity;
    batch->slotSize = slotSize;
    batch->slots = malloc((size_t)capacity * slotSize);
    batch->vectors = calloc(capacity, sizeof(struct iovec));
    batch->destinations = calloc(capacity, sizeof(struct sockaddr_storage));
    batch->addressLengths = calloc(capacity, sizeof(unsigned int));
#ifdef __linux__
    batch->wire = calloc(capacity, sizeof(struct mmsghdr));
    batch->wireFirst = calloc(capacity, sizeof(unsigned int));
    batch->wireCount = calloc(capacity, sizeof(unsigned int));
    batch->controls = calloc(capacity, controlSpace);
    batch->segmentation = 1;
#endif
    if (batch->slots == NULL || batch->vectors == NULL || batch->destinations == NULL || batch->addressLengths == NULL
#ifdef __linux__
        || batch->wire == NULL || batch->wireFirst == NULL || batch->wireCount == NULL || batch->controls == NULL
#endif
    ) {
        CDatagramSendBatch_destroy(batch);
        return NULL;
    }
    for (unsigned int index = 0; index < capacity; index++) {
        batch->vectors[index].iov_base = batch->slots + (size_t)index * slotSize;
    }
    return batch;
}

void CDatagramSendBatch_destroy(CDatagramSendBatch *batch) {
    if (batch == NULL) return;
    free(batch->slots);
    free(batch->vectors);
    free(batch->destinations);
    free(batch->addressLengths);
#ifdef __linux__
    free(batch->wire);
    free(batch->wireFirst);
    free(batch->wireCount);
    free(batch->controls);
#endif
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
    batch->addressLengths[index] = addressLength;
    batch->count = index + 1;
    return (int)(batch->capacity - batch->count);
}

void CDatagramSendBatch_setSegmentation(CDatagramSendBatch *batch, int enabled) {
#ifdef __linux__
    batch->segmentation = enabled;
    batch->segmentationFailures = 0;
#else
    (void)batch; (void)enabled;
#endif
}

unsigned long CDatagramSendBatch_segmented(const CDatagramSendBatch *batch) {
    return batch->segmented;
}

static long sendOne(const CDatagramSendBatch *batch, int descriptor, unsigned int index) {
    return CDatagramBatch_sendto(descriptor, batch->vectors[index].iov_base, batch->vectors[index].iov_len,
        &batch->destinations[index], batch->addressLengths[index]);
}

#ifdef __linux__
/// How many datagrams from `first` on can go as one segmented message.
static unsigned int runLength(const CDatagramSendBatch *batch, unsigned int first, unsigned int count) {
    size_t size = batch->vectors[first].iov_len;
    if (!batch->segmentation || size == 0 || size > segmentMaxSize) return 1;
    unsigned int length = 1;
    size_t total = size;
    while (first + length < count && length < segmentMaxCount) {
        unsigned int next = first + length;
        size_t nextSize = batch->vectors[next].iov_len;
        if (batch->addressLengths[next] != batch->addressLengths[first]
            || memcmp(&batch->destinations[next], &batch->destinations[first], batch->addressLengths[first]) != 0
            || nextSize == 0 || nextSize > size || total + nextSize > segmentMaxTotal)
            break;
        length += 1;
        total += nextSize;
        if (nextSize < size) break;  // only the last segment may be shorter
    }
    return length;
}
#endif

unsigned int CDatagramSendBatch_flush(CDatagramSendBatch *batch, int descriptor) {
    unsigned int count = batch->count;
    unsigned int sent = 0;
    batch->count = 0;
#ifdef __linux__
    unsigned int wires = 0;
    for (unsigned int first = 0; first < count; wires++) {
        unsigned int length = runLength(batch, first, count);
        struct msghdr *header = &batch->wire[wires].msg_hdr;
        memset(header, 0, sizeof(*header));
        header->msg_name = &batch->destinations[first];
        header->msg_namelen = (socklen_t)batch->addressLengths[first];
        header->msg_iov = &batch->vectors[first];
        header->msg_iovlen = length;
        if (length > 1) {
            unsigned char *control = batch->controls + (size_t)wires * controlSpace;
            memset(control, 0, controlSpace);
            header->msg_control = control;
            header->msg_controllen = controlSpace;
            struct cmsghdr *message = CMSG_FIRSTHDR(header);
            message->cmsg_level = SOL_UDP;
            message->cmsg_type = UDP_SEGMENT;
            message->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t segment = (uint16_t)batch->vectors[first].iov_len;
            memcpy(CMSG_DATA(message), &segment, sizeof(segment));
        }
        batch->wireFirst[wires] = first;
        batch->wireCount[wires] = length;
        first += length;
    }
    unsigned int next = 0;
    while (next < wires) {
        long result = syscall(SYS_sendmmsg, descriptor, batch->wire + next, wires - next, MSG_DONTWAIT);
        if (result > 0) {
            for (unsigned int index = next; index < next + (unsigned int)result; index++) {
                sent += batch->wireCount[index];
                if (batch->wireCount[index] > 1) batch->segmented += batch->wireCount[index];
            }
            next += (unsigned int)result;
            continue;
        }
        // The message at `next` was refused. One datagram: dropped (a full socket buffer, an
        // unreachable destination), as a router would, and the rest still go. A segmented
        // run: its datagrams are sent one by one; if they go where the run did not, the kernel
        // or the route does not take segmentation, and after a few such runs it is turned off.
        unsigned int length = batch->wireCount[next];
        if (length > 1) {
            unsigned int alone = 0;
            for (unsigned int index = 0; index < length; index++) {
                if (sendOne(batch, descriptor, batch->wireFirst[next] + index) >= 0) alone++;
            }
            sent += alone;
            if (alone > 0 && ++batch->segmentationFailures >= segmentFailureLimit) batch->segmentation = 0;
        }
        next += 1;
    }
#else
    for (unsigned int index = 0; index < count; index++) {
        if (sendOne(batch, descriptor, index) >= 0) sent++;
    }
#endif
    return sent;
}
