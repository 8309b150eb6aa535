#ifndef C_DATAGRAM_BATCH_H
#define C_DATAGRAM_BATCH_H

#include <stddef.h>

/// The scratch state of batch reads with recvmmsg(2): message headers, vectors and source
/// addresses for up to `capacity` datagrams. Opaque, so that Swift never sees
/// `struct mmsghdr` (its Glibc module hides it behind _GNU_SOURCE).
typedef struct CDatagramBatch CDatagramBatch;

/// NULL when out of memory.
CDatagramBatch *CDatagramBatch_create(unsigned int capacity);
void CDatagramBatch_destroy(CDatagramBatch *batch);

/// Reads up to `count` (≤ capacity) datagrams from `descriptor` without blocking, datagram i
/// into `slotSize` bytes at `base + i * slotSize`. Returns how many were read, or -1 with
/// errno (EAGAIN when none is queued; ENOSYS where the system has no recvmmsg).
int CDatagramBatch_receive(CDatagramBatch *batch, int descriptor, unsigned char *base, size_t slotSize, unsigned int count);

/// The length of datagram `index` of the last read, or -1 if it did not fit its slot.
long CDatagramBatch_length(const CDatagramBatch *batch, unsigned int index);

/// The source of datagram `index` of the last read: a `struct sockaddr_storage`.
const void *CDatagramBatch_source(const CDatagramBatch *batch, unsigned int index);

/// sendto(2) with MSG_DONTWAIT, through syscall(2) on Linux (not a cancellation point: see
/// CDatagramBatch.c). Returns the bytes sent, or -1 with errno.
long CDatagramBatch_sendto(int descriptor, const void *bytes, size_t length, const void *address, unsigned int addressLength);

/// Datagrams to send on one socket with one sendmmsg(2): up to `capacity`, each written into a
/// slot of `slotSize` bytes and committed with its destination. Opaque, like CDatagramBatch.
typedef struct CDatagramSendBatch CDatagramSendBatch;

/// NULL when out of memory.
CDatagramSendBatch *CDatagramSendBatch_create(unsigned int capacity, size_t slotSize);
void CDatagramSendBatch_destroy(CDatagramSendBatch *batch);

/// How many datagrams are committed and not yet sent.
unsigned int CDatagramSendBatch_count(const CDatagramSendBatch *batch);

/// Where the next datagram is to be written (slotSize bytes), or NULL when the batch is full.
unsigned char *CDatagramSendBatch_nextSlot(CDatagramSendBatch *batch);

/// Commits the datagram written into the next slot: `length` bytes, to `address` (a struct
/// sockaddr of `addressLength` bytes). Returns how many slots are left, or -1 if it was not
/// committed (full, too long).
int CDatagramSendBatch_commit(CDatagramSendBatch *batch, size_t length, const void *address, unsigned int addressLength);

/// Sends every committed datagram on `descriptor` without blocking, in order, and empties the
/// batch: one sendmmsg(2), where runs of datagrams to one destination and of one size go as
/// one message with UDP_SEGMENT (segmentation offload; see CDatagramBatch.c). A datagram the
/// kernel refuses is dropped and the rest still go. Returns how many were sent.
unsigned int CDatagramSendBatch_flush(CDatagramSendBatch *batch, int descriptor);

/// Turns segmentation offload on (the default on Linux) or off.
void CDatagramSendBatch_setSegmentation(CDatagramSendBatch *batch, int enabled);

/// How many datagrams have been sent inside segmented messages so far.
unsigned long CDatagramSendBatch_segmented(const CDatagramSendBatch *batch);

#endif
