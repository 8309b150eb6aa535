import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOSSL
import STUN

/// One relay loop of a node: the I/O shell around a ``TURNServerMachine``. It owns its
/// listeners (one of the node's `SO_REUSEPORT` group on each of UDP, TCP and TLS when the
/// node has more than one loop), its relay sockets and its client connections, feeds the
/// machine their events and performs the actions it returns. What the loops share — the
/// tenant quota, the 401 limit, reservation tokens, the relay port pool, the node's status and
/// gauges — is in ``TURNNodeShared``.
///
/// Confinement, not locks: every channel of a loop lives on its event loop, and every
/// method here runs on it (`loop.preconditionInEventLoop()`), which is why the class can be
/// `@unchecked Sendable` — it is handed to channel initialisers that run on that loop.
final class TURNCore: @unchecked Sendable {
    let loop: any EventLoop
    let configuration: TURNServerConfiguration
    let publicIP: IPAddress
    let logger: Logger
    private var machine: TURNServerMachine
    private var metrics: TURNMetrics
    private var udpListener: (any Channel)?
    /// The listener's descriptor, for sending to UDP clients (see ``UDPSocket``).
    private var udpSocket: UDPSocket?
    /// The resolved `host` every socket binds to (relays with their own port).
    private var bindAddress: SocketAddress?
    private var streamListeners: [any Channel] = []
    private var streams: [TURNClient: any Channel] = [:]
    private var relays = AllocationMap<Relay>()
    private let shared: TURNNodeShared
    /// This loop's place in the node (its slot in the node's status).
    private let index: Int
    private var drainWaiters: [EventLoopPromise<Void>] = []
    private var unflushed: [ObjectIdentifier: any Channel] = [:]
    /// Reads the datagrams queued behind the one a UDP channel delivered (``DatagramDrain``).
    private let datagrams = DatagramDrain(slots: 16, allocator: ByteBufferAllocator())
    /// The UDP sockets NIO read a datagram from in this wake-up, to drain after it.
    private var delivered: [Delivery] = []
    private var sweeping: [Delivery] = []
    private var sweepScheduled = false
    /// A socket to drain: the listener's (`relay` nil) or a relay socket's. Plain references,
    /// no channel existentials: one is recorded for every datagram NIO delivers.
    private struct Delivery {
        let descriptor: CInt
        let relay: RelayHandler?
    }
    /// The UDP listener's own address, the server side of every UDP client's 5-tuple (set
    /// by its handler with the first datagram).
    private var listenerAddress: TransportAddress?
    /// At most this many datagrams are drained from one socket per wake-up, so that a busy
    /// socket does not hold up the others on the loop; the rest wait for the next wake-up.
    private static let drainLimit = 64
    /// The UDP listener carries every UDP client's traffic: its socket buffers are 2 MiB (as
    /// coturn's), so that a burst that arrives while the loop is busy waits instead of being
    /// dropped. With the kernel's default (208 KiB, ≈ 90 datagrams of 1,200 B) a few
    /// milliseconds of delay at 20,000 datagrams/s lost 0.1–0.3 % of them on this machine.
    /// Relay sockets keep the default: each carries one allocation.
    private static let listenerBufferSize = 2 << 20
    /// Datagrams to UDP clients, sent together on the listener (``DatagramSendBatch``).
    private let toClients = DatagramSendBatch()
    private var timer: RepeatedTask?
    private var tlsContext: NIOSSLContext?
    private let clockBase = (wall: Int64(Date().timeIntervalSince1970 * 1000), uptime: NIODeadline.now())

    /// One relay socket (its allocation's counters are on its handler); a class, so the
    /// per-packet lookup copies a reference.
    final class Relay {
        let channel: any Channel
        let socket: UDPSocket
        let handler: RelayHandler
        let port: Int

        init(channel: any Channel, socket: UDPSocket, handler: RelayHandler, port: Int) {
            self.channel = channel
            self.socket = socket
            self.handler = handler
            self.port = port
        }

        /// Forgets the descriptor (no drain or send may use its number again), then closes.
        func close() {
            handler.descriptor = -1
            channel.close(promise: nil)
        }
    }

    init(
        configuration: TURNServerConfiguration, publicIP: IPAddress, loop: any EventLoop, logger: Logger, metricsFactory: any MetricsFactory,
        shared: TURNNodeShared, index: Int
    ) {
        self.shared = shared
        self.index = index
        self.metrics = TURNMetrics(factory: metricsFactory)
        self.loop = loop
        self.configuration = configuration
        self.publicIP = publicIP
        self.logger = logger
        var machineConfiguration = TURNServerMachine.Configuration()
        machineConfiguration.realm = configuration.realm
        machineConfiguration.secrets = configuration.secrets
        machineConfiguration.strictExpiry = configuration.strictExpiry
        machineConfiguration.allocationQuotaPerTenant = configuration.allocationQuotaPerTenant
        machineConfiguration.software = configuration.software
        machineConfiguration.unauthenticatedPerSecond = configuration.unauthenticatedPerSecond
        machineConfiguration.unauthenticatedBurst = configuration.unauthenticatedBurst
        machineConfiguration.sharedLedger = shared
        machineConfiguration.nonceSecret = shared.nonceSecret
        var own: Set<IPAddress> = [publicIP]
        if let host = IPAddress(configuration.host), host != .v4(IPv4Address(0)) { own.insert(host) }
        let ports = UInt16(clamping: configuration.relayPorts.lowerBound)...UInt16(clamping: configuration.relayPorts.upperBound)
        machineConfiguration.policy = PeerAddressPolicy(allowLoopback: configuration.allowLoopback, ownAddresses: own, ownPorts: ports)
        machineConfiguration.relayFamilies = [publicIP.family]
        self.machine = TURNServerMachine(configuration: machineConfiguration)
    }

    var now: TURNTime {
        TURNTime(milliseconds: clockBase.wall + (NIODeadline.now() - clockBase.uptime).nanoseconds / 1_000_000)
    }

    private func publish(_ status: TURNNodeStatus) {
        shared.publish(status, loop: index)
    }

    // MARK: Start and stop

    /// Binds the UDP listener on `port`, then TCP on the same port, then TLS on `tlsPort` if
    /// configured; with `reusePort`, each as one of the node's `SO_REUSEPORT` group (the
    /// node's first loop binds first, the others join it on the ports it got).
    func start(port: Int, tlsPort: Int, reusePort: Bool) -> EventLoopFuture<TURNListeningAddresses> {
        loop.preconditionInEventLoop()
        if let certificate = configuration.tlsCertificatePath, let key = configuration.tlsKeyPath {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
                let tls = TLSConfiguration.makeServerConfiguration(
                    certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
                tlsContext = try NIOSSLContext(configuration: tls)
            } catch {
                return loop.makeFailedFuture(error)
            }
        }
        return bindListeners(port: port, reusePort: reusePort, attemptsLeft: port == 0 ? 20 : 1)
            .flatMap { udp, tcp in
                self.udpListener = udp
                self.streamListeners.append(tcp)
                let port = udp.localAddress?.port ?? port
                guard let context = self.tlsContext else {
                    return self.loop.makeSucceededFuture(TURNListeningAddresses(udpPort: port, tcpPort: port, tlsPort: nil))
                }
                return self.bindStream(port: tlsPort, tls: context, reusePort: reusePort).map { tls in
                    self.streamListeners.append(tls)
                    return TURNListeningAddresses(udpPort: port, tcpPort: port, tlsPort: tls.localAddress?.port)
                }
            }
            .map { addresses in
                self.publish(self.status)
                self.timer = self.loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in self.tick() }
                return addresses
            }
    }

    /// UDP, then TCP on the same port. With port 0 the kernel picks the UDP port, which may
    /// be taken for TCP: then both are tried again.
    private func bindListeners(port: Int, reusePort: Bool, attemptsLeft: Int) -> EventLoopFuture<(any Channel, any Channel)> {
        bindUDP(port: port, reuseAddress: !reusePort, reusePort: reusePort, bufferSize: Self.listenerBufferSize) { UDPListenerHandler(core: self) }
            .flatMap { udp, socket in
                // The retry below asks for `port` again (0: another pick), not the one UDP got.
                let bound = udp.localAddress?.port ?? port
                return self.bindStream(port: bound, tls: nil, reusePort: reusePort)
                    .map { tcp in
                        self.udpSocket = socket
                        return (udp, tcp)
                    }
                    .flatMapError { error in
                        udp.close(promise: nil)
                        guard attemptsLeft > 1 else { return self.loop.makeFailedFuture(error) }
                        return self.bindListeners(port: port, reusePort: reusePort, attemptsLeft: attemptsLeft - 1)
                    }
            }
    }

    /// A UDP socket of ours (``UDPSocket``) bound to `host` and `port`, read through a NIO
    /// datagram channel whose pipeline is the handler `makeHandler` makes.
    private func bindUDP<Handler: ChannelHandler>(
        port: Int, reuseAddress: Bool, reusePort: Bool = false, bufferSize: Int? = nil, _ makeHandler: @escaping @Sendable () -> Handler
    ) -> EventLoopFuture<(any Channel, UDPSocket)> {
        do {
            let socket = try makeSocket(port: port, reuseAddress: reuseAddress, reusePort: reusePort, bufferSize: bufferSize)
            return register(socket, makeHandler)
        } catch {
            return loop.makeFailedFuture(error)
        }
    }

    /// A UDP socket of ours bound to `host` and `port`, not yet read by any channel.
    private func makeSocket(port: Int, reuseAddress: Bool, reusePort: Bool = false, bufferSize: Int? = nil) throws -> UDPSocket {
        // `host` is resolved once: a name is looked up at start, never per allocation.
        var address = try bindAddress ?? SocketAddress.makeAddressResolvingHost(configuration.host, port: 0)
        bindAddress = address
        address.port = port
        return try UDPSocket.bind(address, reuseAddress: reuseAddress, reusePort: reusePort, bufferSize: bufferSize)
    }

    /// `socket` read through a NIO datagram channel on this loop whose pipeline is the handler
    /// `makeHandler` makes; the channel owns the descriptor from then on.
    private func register<Handler: ChannelHandler>(
        _ socket: UDPSocket, _ makeHandler: @escaping @Sendable () -> Handler
    ) -> EventLoopFuture<(any Channel, UDPSocket)> {
        let bootstrap = DatagramBootstrap(group: loop)
            // NIO reads one datagram per wake-up; the rest are drained after it (``DatagramDrain``).
            // One byte more than a slot, so that a longer datagram shows and is dropped.
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: DatagramDrain.slotSize + 1))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(makeHandler()) }
            }
        return bootstrap.withBoundSocket(socket.descriptor).map { channel in (channel, socket) }
    }

    private func bindStream(port: Int, tls: NIOSSLContext?, reusePort: Bool) -> EventLoopFuture<any Channel> {
        let transport: TURNTransport = tls == nil ? .tcp : .tls
        return ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: reusePort ? 1 : 0)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if let tls { try operations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try operations.addHandler(IdleStateHandler(readTimeout: self.configuration.streamIdleTimeout))
                    try operations.addHandler(ByteToMessageHandler(TURNStreamDecoder()))
                    try operations.addHandler(StreamHandler(core: self, transport: transport))
                }
            }
            .bind(host: configuration.host, port: port)
    }

    /// Closes everything.
    func shutdown() -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        timer?.cancel()
        timer = nil
        perform(machine.endAll())
        var channels: [any Channel] = streamListeners + Array(streams.values)
        if let udpListener { channels.append(udpListener) }
        udpSocket = nil
        streams = [:]
        streamListeners = []
        udpListener = nil
        publish(status)
        let closes = channels.map { channel in channel.close().recover { _ in } }
        return EventLoopFuture.andAllComplete(closes, on: loop)
    }

    /// Stops taking allocations; succeeds when the last one ends or after `timeout`.
    func drain(timeout: TimeAmount) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        machine.startDraining()
        publish(status)
        if machine.allocationCount == 0 { return loop.makeSucceededVoidFuture() }
        let promise = loop.makePromise(of: Void.self)
        drainWaiters.append(promise)
        loop.scheduleTask(in: timeout) {
            // Only if the last allocation has not ended first (a promise succeeds once).
            guard let index = self.drainWaiters.firstIndex(where: { $0.futureResult === promise.futureResult }) else { return }
            self.drainWaiters.remove(at: index)
            self.logger.info("drain timeout reached", metadata: ["allocations": "\(self.machine.allocationCount)"])
            promise.succeed()
        }
        return promise.futureResult
    }

    var status: TURNNodeStatus {
        loop.preconditionInEventLoop()
        let counts = machine.permissionAndChannelCounts
        return TURNNodeStatus(
            allocations: machine.allocationCount, allocationsByTenant: machine.allocationsByTenant, permissions: counts.permissions,
            channels: counts.channels, isDraining: machine.isDraining, isListening: udpListener != nil)
    }

    func endAllocations(tenant: String) {
        loop.preconditionInEventLoop()
        perform(machine.endAllocations(tenant: tenant))
    }

    // MARK: Events

    /// Bytes from a client. `now` is read once per burst of datagrams by the caller that has one.
    func fromClient(_ bytes: ByteBuffer, client: TURNClient, now: TURNTime? = nil) {
        let now = now ?? self.now
        if let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self), ChannelData.isChannelData(firstByte: first) {
            bytes.withUnsafeReadableBytes { relayChannelData($0, from: client, now: now) }
            return
        }
        perform(machine.receive(bytes, from: client, now: now))
    }

    /// A datagram a drain read from the UDP listener, in place (see ``DatagramDrain``).
    private func fromClient(_ bytes: UnsafeRawBufferPointer, client: TURNClient, now: TURNTime) {
        if let first = bytes.first, ChannelData.isChannelData(firstByte: first) {
            relayChannelData(bytes, from: client, now: now)
        } else {
            perform(machine.receive(ByteBuffer(bytes: bytes), from: client, now: now))
        }
    }

    /// The relay path from a client, for ChannelData (what a client relays once its channel is
    /// bound): the machine only decides where it goes (``TURNServerMachine/channelDataRoute``),
    /// and the payload is sent to the peer from where it was read — no buffer, no action.
    private func relayChannelData(_ bytes: UnsafeRawBufferPointer, from client: TURNClient, now: TURNTime) {
        guard let (number, length) = ChannelData.header(of: bytes),
            let route = machine.channelDataRoute(number, from: client, now: now)
        else { return }
        sendToPeer(UnsafeRawBufferPointer(rebasing: bytes[4..<4 + length]), allocation: route.allocation, peer: route.peer)
    }

    /// `payload` to `peer` from allocation `id`'s relay socket, counted on its handler.
    private func sendToPeer(_ payload: UnsafeRawBufferPointer, allocation id: AllocationID, peer: TransportAddress) {
        // In place: a copy of the relay's reference would be retained and released per packet.
        relays.withValue(for: id) { relay in
            // A relay socket NIO closed on its own (a fatal read error) has descriptor -1.
            guard relay.handler.descriptor >= 0 else { return }
            relay.handler.traffic.packetsToPeer &+= 1
            relay.handler.traffic.bytesToPeer &+= payload.count
            relay.socket.send(payload, to: peer)
        }
    }

    func fromPeer(_ payload: ByteBuffer, peer: TransportAddress, relay handler: RelayHandler, now: TURNTime? = nil) {
        let now = now ?? self.now
        payload.withUnsafeReadableBytes { fromPeer($0, peer: peer, relay: handler, now: now) }
    }

    /// The relay path from a peer: the machine decides where the datagram goes
    /// (``TURNServerMachine/peerRoute``); to a UDP client on a channel (the common case) it is
    /// copied straight into the send batch behind its ChannelData header. A Data indication,
    /// or a TCP client, gets a buffer of its own.
    private func fromPeer(_ payload: UnsafeRawBufferPointer, peer: TransportAddress, relay handler: RelayHandler, now: TURNTime) {
        guard let id = handler.allocation, let route = machine.peerRoute(peer, allocation: id, now: now) else { return }
        handler.traffic.packetsToClient &+= 1
        handler.traffic.bytesToClient &+= payload.count
        switch (route.client.transport, route.channel) {
        case (.udp, let channel?):
            sendToUDPClient(payload, channel: channel, to: route.client.remote)
        case (_, let channel?):
            perform(.sendChannelDataToClient(ChannelData(channel: channel, payload: ByteBuffer(bytes: payload)), route.client))
        case (_, nil):
            perform(.sendToClient(machine.dataIndication(ByteBuffer(bytes: payload), from: peer), route.client))
        }
    }

    /// Called after each datagram a UDP channel delivers (one per socket and wake-up: the
    /// channels read one each): the socket is drained (``DatagramDrain``) once NIO has handled
    /// every event of this wake-up — not at once, because NIO's channel read must find its
    /// datagram on every socket its poll reported, so nothing may empty a socket it has not
    /// reached yet.
    func datagramDelivered(on descriptor: CInt, relay: RelayHandler?) {
        delivered.append(Delivery(descriptor: descriptor, relay: relay))
        scheduleSweep()
    }

    /// The listener's handler reports the listener's address and the datagram it read.
    func listenerDelivered(local: TransportAddress) {
        guard let descriptor = udpSocket?.descriptor else { return }
        if listenerAddress == nil { listenerAddress = local }
        datagramDelivered(on: descriptor, relay: nil)
    }

    /// The UDP listener's channel (for tests).
    var listenerChannel: (any Channel)? { udpListener }

    /// The UDP listener's channel closed (at shutdown, or by NIO on a fatal read error): its
    /// descriptor is forgotten, and the node no longer reports itself listening.
    func listenerInactive(_ channel: any Channel) {
        // Only the current listener: a listener given up while binding closes too.
        guard let udpListener, udpListener === channel else { return }
        udpSocket = nil
        self.udpListener = nil
    }

    /// Runs ``sweep()`` once NIO has handled every event of this wake-up.
    private func scheduleSweep() {
        guard !sweepScheduled else { return }
        sweepScheduled = true
        loop.execute { self.sweep() }
    }

    /// Reads what is queued on the sockets NIO read from in this wake-up and relays it, then
    /// sends what is batched for UDP clients and flushes the streams relayed data was written to.
    private func sweep() {
        // Cleared at the end: what the sweep itself batches for clients needs no further sweep.
        defer { sweepScheduled = false }
        // What NIO's reads of this wake-up relayed goes first (one datagram per socket, often the
        // only one: a lone packet is not held up by the drains), then what the drains relay.
        flushDatagrams()
        let now = self.now
        // swapped out, so that the list does not change while it is walked
        swap(&delivered, &sweeping)
        for delivery in sweeping { drain(delivery, now: now) }
        sweeping.removeAll(keepingCapacity: true)
        flushPending()
    }

    /// Drains one delivered socket — only while it is still open: what an earlier drain relayed
    /// may have closed it (the core forgets a descriptor before it closes its channel).
    private func drain(_ delivery: Delivery, now: TURNTime) {
        let descriptor = delivery.descriptor
        if let handler = delivery.relay {
            datagrams.drain(descriptor, limit: Self.drainLimit, isOpen: { handler.descriptor == descriptor }) { payload, peer in
                fromPeer(payload, peer: peer, relay: handler, now: now)
            }
        } else if let local = listenerAddress {
            datagrams.drain(descriptor, limit: Self.drainLimit, isOpen: { self.udpSocket?.descriptor == descriptor }) { bytes, remote in
                fromClient(bytes, client: TURNClient(transport: .udp, local: local, remote: remote), now: now)
            }
        }
    }

    func streamOpened(_ client: TURNClient, channel: any Channel) {
        streams[client] = channel
    }

    /// A stream has been silent for the idle timeout: closed unless it holds an allocation
    /// (a receive-only client may be silent while its peer talks).
    func streamIdle(_ client: TURNClient) -> Bool {
        !machine.hasAllocation(client)
    }

    func streamClosed(_ client: TURNClient) {
        streams[client] = nil
        perform(machine.connectionClosed(client))
    }

    private func tick() {
        for (_, relay) in relays { relay.handler.publishTraffic() }
        perform(machine.expire(now: now))
        publish(status)
    }

    // MARK: Actions

    /// Control-plane actions: performed and flushed at once.
    private func perform(_ actions: [TURNServerMachine.Action]) {
        for action in actions { perform(action) }
        flushPending()
    }

    /// Sends what is batched for UDP clients, and flushes the streams written to.
    func flushPending() {
        flushDatagrams()
        flushStreams()
    }

    /// Data relayed to TCP and TLS clients is written without a flush; the handler that read
    /// it (a relay socket's or a stream's) or the sweep flushes every touched stream once per
    /// read burst.
    func flushStreams() {
        guard !unflushed.isEmpty else { return }
        for channel in unflushed.values { channel.flush() }
        unflushed.removeAll(keepingCapacity: true)
    }

    /// Datagrams to UDP clients wait in ``toClients`` until the end of the sweep (or of a
    /// control-plane action), or until it is full; their order is kept, as everything sent on
    /// the listener goes through it.
    private func flushDatagrams() {
        guard !toClients.isEmpty, let udpSocket else { return }
        toClients.flush(udpSocket.descriptor)
    }

    /// `payload` to a UDP client, behind a ChannelData header when `channel` is given. A
    /// datagram longer than a slot is not added, and no relay socket takes one in.
    private func sendToUDPClient(_ payload: ByteBuffer, channel: UInt16? = nil, to client: TransportAddress) {
        payload.withUnsafeReadableBytes { sendToUDPClient($0, channel: channel, to: client) }
    }

    private func sendToUDPClient(_ payload: UnsafeRawBufferPointer, channel: UInt16? = nil, to client: TransportAddress) {
        guard udpSocket != nil else { return }
        if toClients.isFull { flushDatagrams() }
        toClients.append(payload, channel: channel, to: client)
        scheduleSweep()
    }

    private func write<Message: Sendable>(_ channel: any Channel, _ data: Message) {
        channel.write(data, promise: nil)
        let key = ObjectIdentifier(channel)
        if unflushed[key] == nil { unflushed[key] = channel }
    }

    private func perform(_ action: TURNServerMachine.Action) {
        switch action {
        case .sendToClient(let bytes, let client):
            // Relayed traffic is datagrams: when a socket cannot keep up, drop rather than queue
            // without bound (a peer flooding a slow TCP client must not grow our memory).
            if client.transport == .udp {
                sendToUDPClient(bytes, to: client.remote)
            } else {
                guard let stream = streams[client], stream.isWritable else { return }
                write(stream, bytes)
            }
        case .sendChannelDataToClient(let data, let client):
            if client.transport == .udp {
                sendToUDPClient(data.payload, channel: data.channel, to: client.remote)
            } else {
                guard let stream = streams[client], stream.isWritable else { return }
                write(stream, data.encoded(padded: true))
            }
        case .sendToPeer(let payload, let id, let peer):
            payload.withUnsafeReadableBytes { sendToPeer($0, allocation: id, peer: peer) }
        case .openRelay(let request):
            openRelay(request)
        case .closeRelay(let id):
            if let relay = relays.removeValue(forKey: id) {
                relay.handler.publishTraffic()
                relay.close()
                shared.ports.release(relay.port)
            }
            if machine.allocationCount == 0, !drainWaiters.isEmpty {
                let waiters = drainWaiters
                drainWaiters = []
                for waiter in waiters { waiter.succeed() }
            }
        case .releaseReservation(let address):
            shared.ports.closeReserved(address)
        case .report(let report):
            metrics.record(report)
            switch report {
            case .allocated(let id, let tenant, let client, let relayed):
                logger.debug("allocation opened", metadata: ["allocation": "\(id)", "tenant": "\(tenant)", "client": "\(client)", "relayed": "\(relayed)"])
            case .released(let id, let tenant, let reason):
                logger.debug("allocation ended", metadata: ["allocation": "\(id)", "tenant": "\(tenant)", "reason": "\(reason)"])
            case .peerRefused(let tenant, let reason):
                logger.info("peer refused", metadata: ["tenant": "\(tenant)", "reason": "\(reason.rawValue)"])
            case .quotaReached(let tenant):
                logger.info("allocation refused: tenant quota reached", metadata: ["tenant": "\(tenant)"])
            case .authenticationFailed, .rateLimited:
                break
            }
        }
    }

    // MARK: Relay sockets

    private func openRelay(_ request: TURNServerMachine.RelayRequest) {
        if let address = request.reservedAddress {
            // Kept by an earlier EVEN-PORT, perhaps on another loop of the node: read from here on.
            guard let socket = shared.ports.takeReserved(address) else {
                perform(machine.relayFailed(request.allocation, now: now))
                return
            }
            let port = Int(address.port)
            register(socket) { RelayHandler(core: self) }
                .flatMapThrowing { channel, socket in try self.relay(channel, socket: socket, port: port) }
                .whenComplete { result in
                    switch result {
                    case .success(let relay): self.opened(request, relay: relay, reservedNext: nil)
                    case .failure:
                        self.shared.ports.release(port)
                        self.perform(self.machine.relayFailed(request.allocation, now: self.now))
                    }
                }
            return
        }
        let range = configuration.relayPorts
        let step = request.evenPort ? 2 : 1
        var start = Int.random(in: range)
        if request.evenPort, start % 2 == 1 { start = start == range.upperBound ? start - 1 : start + 1 }
        bindRelay(request, candidate: start, step: step, attemptsLeft: 64)
    }

    /// Binds a relay socket on a port of the range the node's loops do not use (claimed in
    /// ``TURNNodeShared/ports`` before the bind, given back if it fails), and with EVEN-PORT's
    /// R bit a socket on the next port, kept for the reservation token.
    private func bindRelay(_ request: TURNServerMachine.RelayRequest, candidate: Int, step: Int, attemptsLeft: Int) {
        let range = configuration.relayPorts
        guard attemptsLeft > 0 else {
            logger.warning("no free relay port", metadata: ["range": "\(range)"])
            perform(machine.relayFailed(request.allocation, now: now))
            return
        }
        var port = candidate
        if port > range.upperBound || (request.reserveNextPort && port + 1 > range.upperBound) {
            port = range.lowerBound
            if step == 2, port % 2 == 1 { port += 1 }
        }
        let next = port + step
        let chosen = port
        let ports = request.reserveNextPort ? [port, port + 1] : [port]
        guard shared.ports.claim(ports) else {
            bindRelay(request, candidate: next, step: step, attemptsLeft: attemptsLeft - 1)
            return
        }
        let kept: UDPSocket?
        do {
            kept = request.reserveNextPort ? try makeSocket(port: port + 1, reuseAddress: false) : nil
        } catch {
            for port in ports { shared.ports.release(port) }
            bindRelay(request, candidate: next, step: step, attemptsLeft: attemptsLeft - 1)
            return
        }
        bindUDP(port: chosen, reuseAddress: false) { RelayHandler(core: self) }
            .flatMapThrowing { channel, socket in try self.relay(channel, socket: socket, port: chosen) }
            .whenComplete { result in
                switch result {
                case .success(let relay):
                    self.opened(request, relay: relay, reservedNext: kept)
                case .failure:
                    kept?.close()
                    for port in ports { self.shared.ports.release(port) }
                    self.bindRelay(request, candidate: next, step: step, attemptsLeft: attemptsLeft - 1)
                }
            }
    }

    private func relay(_ channel: any Channel, socket: UDPSocket, port: Int) throws -> Relay {
        let handler = try channel.pipeline.syncOperations.handler(type: RelayHandler.self)
        handler.descriptor = socket.descriptor
        return Relay(channel: channel, socket: socket, handler: handler, port: port)
    }

    private func opened(_ request: TURNServerMachine.RelayRequest, relay: Relay, reservedNext: UDPSocket?) {
        relay.handler.allocation = request.allocation
        relay.handler.metrics = TURNMetrics.Relay(tenant: request.tenant, factory: metrics.factory)
        relays[request.allocation] = relay
        var reservedAddress: TransportAddress?
        if let reservedNext {
            let address = TransportAddress(ip: publicIP, port: UInt16(relay.port + 1))
            shared.ports.keep(reservedNext, at: address)
            reservedAddress = address
        }
        let relayed = TransportAddress(ip: publicIP, port: UInt16(relay.port))
        perform(machine.relayOpened(request.allocation, relayed: relayed, reserved: reservedAddress, now: now))
    }
}

/// Where a node listens.
public struct TURNListeningAddresses: Sendable, Hashable {
    public var udpPort: Int
    public var tcpPort: Int
    public var tlsPort: Int?
}

/// A node's state for probes and metrics.
public struct TURNNodeStatus: Sendable, Hashable {
    public var allocations: Int
    public var allocationsByTenant: [String: Int]
    public var permissions: Int
    public var channels: Int
    public var isDraining: Bool
    public var isListening: Bool
}
