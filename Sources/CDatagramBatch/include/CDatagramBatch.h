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

#endif
