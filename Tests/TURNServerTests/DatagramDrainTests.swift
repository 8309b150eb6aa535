import NIOCore
import STUN
import Testing

@testable import TURNServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// ``DatagramDrain`` on real loopback sockets: what it reads, in what order, how much per call,
/// and the binary source addresses it hands out (IPv4 and IPv6); and ``DatagramSendBatch``.
@Suite struct DatagramDrainTests {
    @Test(arguments: ["127.0.0.1", "::1"])
    func readsQueuedDatagramsInOrderUpToTheLimitAndDropsOversizedOnes(host: String) throws {
        guard let (receiver, receiverAddress) = try? boundSocket(host) else {
            return  // no such loopback here (an IPv6-less container): nothing to test
        }
        let (sender, senderAddress) = try boundSocket(host)
        defer { closeAll(receiver, sender) }
        for index in 0..<40 {
            if index == 20 { #expect(sender.send(ByteBuffer(repeating: 0x55, count: 3000), to: receiverAddress)) }
            #expect(sender.send(ByteBuffer(string: "datagram \(index)"), to: receiverAddress))
        }
        let drain = DatagramDrain(slots: 16, allocator: ByteBufferAllocator())
        var seen: [String] = []
        var sources: Set<TransportAddress> = []
        let first = drain.drain(receiver.descriptor, limit: 30, isOpen: { true }) { payload, source in
            seen.append(String(decoding: payload, as: UTF8.self))
            sources.insert(source)
        }
        #expect(first == 30)  // the oversized one counts as read, and is not handed out
        #expect(seen == (0..<29).map { "datagram \($0)" })
        let rest = drain.drain(receiver.descriptor, limit: 64, isOpen: { true }) { payload, source in
            seen.append(String(decoding: payload, as: UTF8.self))
            sources.insert(source)
        }
        #expect(rest == 11)
        #expect(seen == (0..<40).map { "datagram \($0)" })
        #expect(sources == [senderAddress])
        #expect(senderAddress.ip == IPAddress(host))  // the binary address, read independently of the text
        // an empty queue: nothing read, no error
        #expect(drain.drain(receiver.descriptor, limit: 64, isOpen: { true }) { _, _ in Issue.record("nothing is queued") } == 0)
    }

    @Test func stopsWhenTheSocketIsNoLongerOpen() throws {
        let (receiver, receiverAddress) = try boundSocket("127.0.0.1")
        let (sender, _) = try boundSocket("127.0.0.1")
        defer { closeAll(receiver, sender) }
        for index in 0..<5 { #expect(sender.send(ByteBuffer(string: "\(index)"), to: receiverAddress)) }
        let drain = DatagramDrain(slots: 16, allocator: ByteBufferAllocator())
        #expect(drain.drain(receiver.descriptor, limit: 64, isOpen: { false }) { _, _ in Issue.record("read a closed socket") } == 0)
        #expect(drain.drain(receiver.descriptor, limit: 64, isOpen: { true }) { _, _ in } == 5)
    }

    /// One drain serves sockets of both families, its buffer reused between calls:
    /// the receive headers it keeps from call to call (CDatagramBatch.c) must give every
    /// datagram its own length and whole source address — an IPv6 source after IPv4 ones,
    /// whose shorter address length the kernel wrote back, included.
    @Test func aReusedDrainReadsEveryFamilyAndBufferAfterAnother() throws {
        let (receiver4, address4) = try boundSocket("127.0.0.1")
        let (sender4, source4) = try boundSocket("127.0.0.1")
        defer { closeAll(receiver4, sender4) }
        let drain = DatagramDrain(slots: 4, allocator: ByteBufferAllocator())
        var kept: [ByteBuffer] = []
        for round in 0..<3 {
            for index in 0..<(round + 2) { #expect(sender4.send(ByteBuffer(string: "v4 \(round).\(index)" + String(repeating: "x", count: index)), to: address4)) }
            var seen: [String] = []
            drain.drain(receiver4.descriptor, limit: 64, isOpen: { true }) { payload, source in
                seen.append(String(decoding: payload, as: UTF8.self))
                #expect(source == source4)
                if round == 1 { kept.append(ByteBuffer(bytes: payload)) }  // copies: round 2 reads into the same buffer
            }
            #expect(seen == (0..<(round + 2)).map { "v4 \(round).\($0)" + String(repeating: "x", count: $0) })
        }
        #expect(kept.map { String(buffer: $0) } == ["v4 1.0", "v4 1.1x", "v4 1.2xx"])
        guard let (receiver6, address6) = try? boundSocket("::1") else { return }  // no IPv6 loopback here
        let (sender6, source6) = try boundSocket("::1")
        defer { closeAll(receiver6, sender6) }
        for index in 0..<6 { #expect(sender6.send(ByteBuffer(string: "v6 \(index)"), to: address6)) }
        var seen: [String] = []
        drain.drain(receiver6.descriptor, limit: 64, isOpen: { true }) { payload, source in
            seen.append(String(decoding: payload, as: UTF8.self))
            #expect(source == source6)
        }
        #expect(seen == (0..<6).map { "v6 \($0)" })
    }

    /// ``DatagramSendBatch``: what is appended arrives in order, a full batch refuses more
    /// until flushed, ChannelData gets its header, and a datagram the kernel refuses (here an
    /// address of the other family) is dropped while the rest still go.
    @Test(arguments: ["127.0.0.1", "::1"])
    func sendBatchKeepsOrderAndDropsOnlyWhatTheKernelRefuses(host: String) throws {
        guard let (receiver, receiverAddress) = try? boundSocket(host) else { return }
        let (sender, _) = try boundSocket(host)
        defer { closeAll(receiver, sender) }
        let otherFamily = TransportAddress(ip: host.contains(":") ? .v4(IPv4Address(127, 0, 0, 1)) : .v6(IPv6Address(high: 0, low: 1)), port: 9)
        let batch = DatagramSendBatch()
        var expected: [String] = []
        var sent = 0
        for index in 0..<70 {
            if batch.isFull { sent += batch.flush(sender.descriptor) }
            if index == 33 { #expect(batch.append(ByteBuffer(string: "refused"), to: otherFamily)) }
            if batch.isFull { sent += batch.flush(sender.descriptor) }
            if index % 2 == 0 {
                #expect(batch.append(ByteBuffer(string: "bytes \(index)"), to: receiverAddress))
                expected.append("bytes \(index)")
            } else {
                #expect(batch.append(ByteBuffer(string: "channel \(index)"), channel: 0x4000 + UInt16(index), to: receiverAddress))
                expected.append("0x\(String(0x4000 + index, radix: 16)) channel \(index)")
            }
        }
        #expect(!batch.append(ByteBuffer(repeating: 1, count: DatagramSendBatch.slotSize + 1), to: receiverAddress))  // longer than a slot
        sent += batch.flush(sender.descriptor)
        #expect(batch.isEmpty && sent == 70)
        var seen: [String] = []
        let drain = DatagramDrain(slots: 16, allocator: ByteBufferAllocator())
        drain.drain(receiver.descriptor, limit: 100, isOpen: { true }) { payload, _ in
            if let data = ChannelData(decoding: ByteBuffer(bytes: payload)) {
                seen.append("0x\(String(data.channel, radix: 16)) \(String(buffer: data.payload))")
            } else {
                seen.append(String(decoding: payload, as: UTF8.self))
            }
        }
        #expect(seen == expected)
    }

    /// Segmentation offload: runs of equal-sized datagrams to one destination (the last of a
    /// run may be shorter) go out as one message and still arrive as separate datagrams, in
    /// order; a run the kernel refuses is tried datagram by datagram. Off, the same arrives.
    @Test(arguments: [("127.0.0.1", true), ("::1", true), ("127.0.0.1", false)])
    func segmentedRunsArriveAsSeparateDatagrams(host: String, segmentation: Bool) throws {
        guard let (first, firstAddress) = try? boundSocket(host) else { return }
        let (second, secondAddress) = try boundSocket(host)
        let (sender, _) = try boundSocket(host)
        defer { closeAll(first, second, sender) }
        let otherFamily = TransportAddress(ip: host.contains(":") ? .v4(IPv4Address(127, 0, 0, 1)) : .v6(IPv6Address(high: 0, low: 1)), port: 9)
        let batch = DatagramSendBatch(segmentation: segmentation)
        func payload(_ text: String, size: Int) -> ByteBuffer {
            var buffer = ByteBuffer(string: text)
            buffer.writeRepeatingByte(0x2E, count: size - buffer.readableBytes)
            return buffer
        }
        var toFirst: [ByteBuffer] = []
        var toSecond: [ByteBuffer] = []
        for index in 0..<12 {  // a run of 12 × 1,200 B
            toFirst.append(payload("first \(index)", size: 1200))
            #expect(batch.append(toFirst[index], to: firstAddress))
        }
        for index in 0..<4 {  // 3 × 100 B and a shorter last one
            toSecond.append(payload("second \(index)", size: index == 3 ? 60 : 100))
            #expect(batch.append(toSecond[index], to: secondAddress))
        }
        for index in 0..<3 { #expect(batch.append(payload("refused \(index)", size: 100), to: otherFamily)) }
        for index in 12..<17 {  // 1,300 B and a shorter 200 B end a run of two; 3 × 200 B a third
            toFirst.append(payload("first \(index)", size: index == 12 ? 1300 : 200))
            #expect(batch.append(toFirst[index], to: firstAddress))
        }
        #expect(batch.flush(sender.descriptor) == 21)
        #expect(batch.segmented == (segmentation ? 12 + 4 + 2 + 3 : 0))
        let drain = DatagramDrain(slots: 16, allocator: ByteBufferAllocator())
        var received: [ByteBuffer] = []
        drain.drain(first.descriptor, limit: 64, isOpen: { true }) { bytes, _ in received.append(ByteBuffer(bytes: bytes)) }
        #expect(received == toFirst)
        received = []
        drain.drain(second.descriptor, limit: 64, isOpen: { true }) { bytes, _ in received.append(ByteBuffer(bytes: bytes)) }
        #expect(received == toSecond)
    }

    private func closeAll(_ sockets: UDPSocket...) {
        for socket in sockets { close(socket.descriptor) }
    }

    /// A UDP socket of ours on `host`, port chosen by the kernel, and its address.
    private func boundSocket(_ host: String) throws -> (UDPSocket, TransportAddress) {
        let socket = try UDPSocket.bind(try SocketAddress(ipAddress: host, port: 0), reuseAddress: false)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket.descriptor, $0, &length) }
        }
        guard result == 0, let address = withUnsafePointer(to: &storage, { TransportAddress($0) }) else {
            close(socket.descriptor)
            throw IOError(errnoCode: errno, reason: "getsockname")
        }
        return (socket, address)
    }
}

/// The tests' datagrams are buffers; the product sends bytes in place.
extension DatagramSendBatch {
    @discardableResult
    func append(_ payload: ByteBuffer, channel: UInt16? = nil, to destination: TransportAddress) -> Bool {
        payload.withUnsafeReadableBytes { append($0, channel: channel, to: destination) }
    }
}

extension UDPSocket {
    @discardableResult
    func send(_ payload: ByteBuffer, to destination: TransportAddress) -> Bool {
        payload.withUnsafeReadableBytes { send($0, to: destination) }
    }
}
