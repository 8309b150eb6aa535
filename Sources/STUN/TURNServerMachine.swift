import NIOCore

/// The TURN server's protocol logic (RFC 8656 over RFC 8489) as a value type: every method
/// takes an event — bytes from a client, bytes from a peer, a relay socket opened, the clock —
/// and returns the ``Action``s the I/O shell must perform. No sockets, no clocks, no locks.
///
/// Requests are checked in coturn's order: authentication (401 with REALM and NONCE, 438
/// with a fresh NONCE when stale, 441 for another user's allocation), 437 allocation
/// mismatch, 420 unknown comprehension-required attributes, REQUESTED-TRANSPORT (400 when
/// missing, 442 unless UDP), DONT-FRAGMENT (420 unless supported), RESERVATION-TOKEN and
/// EVEN-PORT (400 together, 508 when the token is unknown), address families (440/443),
/// 403 while draining, 486 over the tenant's quota. Unauthenticated answers are
/// rate-limited per source address so the server is no amplifier.
public struct TURNServerMachine: Sendable {
    /// Everything the machine needs to know; built once by the shell.
    public struct Configuration: Sendable {
        /// REALM sent in 401s and used in the long-term key.
        public var realm: String = "switchboard"
        /// TURN REST secrets; any of them verifies a credential.
        public var secrets: [String] = []
        /// Key of the stateless nonces (random by default: nonces do not survive a restart).
        public var nonceSecret: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }
        /// Seconds a nonce stays valid before 438.
        public var nonceLifetime: Int64 = 600
        /// Allocation lifetime when the client asks for none (RFC 8656: 600 s).
        public var defaultLifetime: Int64 = 600
        /// The longest allocation lifetime granted (3600 s).
        public var maxLifetime: Int64 = 3600
        /// Permission lifetime (RFC 8656: 300 s, not negotiable).
        public var permissionLifetime: Int64 = 300
        /// Channel binding lifetime (RFC 8656: 600 s).
        public var channelLifetime: Int64 = 600
        /// How long a port kept by EVEN-PORT's R bit waits for its RESERVATION-TOKEN.
        public var reservationLifetime: Int64 = 30
        /// How long a retransmitted Allocate gets the cached success response.
        public var allocateRetransmissionWindow: Int64 = 40
        /// Which peers may be relayed to.
        public var policy = PeerAddressPolicy()
        /// The address families relays can be opened in.
        public var relayFamilies: Set<AddressFamily> = [.ipv4]
        /// Most allocations (open or opening) one tenant may hold on this node; nil = no limit.
        public var allocationQuotaPerTenant: Int?
        /// End allocations when their credential expires (`--strict-expiry`); otherwise an
        /// expired credential still refreshes the allocation it opened, but opens no new one.
        public var strictExpiry = false
        /// Whether DONT-FRAGMENT is honoured; when not, Allocate with it gets 420.
        public var supportsDontFragment = false
        /// SOFTWARE attribute; none by default.
        public var software: String?
        /// Unauthenticated answers (401, 438, 400, Binding) per second per source address.
        public var unauthenticatedPerSecond: Double = 10
        /// … and the burst allowed above that rate.
        public var unauthenticatedBurst: Double = 20
        /// The ledger shared with the node's other machines (one per relay loop); nil: this
        /// machine keeps its own.
        public var sharedLedger: (any TURNSharedLedger)?

        public init() {}
    }

    /// What the shell must do.
    public enum Action: Sendable {
        /// Send `bytes` to the client over its 5-tuple.
        case sendToClient(ByteBuffer, TURNClient)
        /// Send `data` to the client as a ChannelData message — padded to 4 bytes over TCP and
        /// TLS; over UDP the shell can send the header and the peer's payload as one datagram
        /// without copying the payload into a new buffer.
        case sendChannelDataToClient(ChannelData, TURNClient)
        /// Send `payload` from the allocation's relay socket to `peer`.
        case sendToPeer(ByteBuffer, allocation: AllocationID, peer: TransportAddress)
        /// Open a relay socket; answer with ``relayOpened(_:relayed:reserved:now:)`` or ``relayFailed(_:now:)``.
        case openRelay(RelayRequest)
        /// Close the allocation's relay socket.
        case closeRelay(AllocationID)
        /// Free a port that was kept for a RESERVATION-TOKEN that never came.
        case releaseReservation(TransportAddress)
        /// Something worth counting or logging.
        case report(Report)
    }

    /// What the shell must open for an Allocate.
    public struct RelayRequest: Sendable, Hashable {
        public var allocation: AllocationID
        public var tenant: String
        public var family: AddressFamily
        /// EVEN-PORT: the relay port must be even.
        public var evenPort: Bool
        /// EVEN-PORT with R: also keep the next (odd) port and report it as `reserved`.
        public var reserveNextPort: Bool
        /// RESERVATION-TOKEN: use exactly this address, kept by an earlier EVEN-PORT.
        public var reservedAddress: TransportAddress?
    }

    /// Events for metrics and logs.
    public enum Report: Sendable, Hashable {
        case authenticationFailed(reason: String)
        case peerRefused(tenant: String, reason: PeerAddressPolicy.Refusal)
        case allocated(AllocationID, tenant: String, client: TURNClient, relayed: TransportAddress)
        case released(AllocationID, tenant: String, reason: String)
        case rateLimited(IPAddress)
        /// An Allocate refused with 486: the tenant holds its quota of allocations here.
        case quotaReached(tenant: String)
    }

    public let configuration: Configuration
    private let nonces: NonceIssuer
    private var allocations = AllocationMap<Allocation>()
    private var allocationByClient: [TURNClient: AllocationID] = [:]
    /// ``allocationByClient`` for the relay path, without a hash per packet.
    private var routeCache = ClientAllocationCache()
    private var pending: [AllocationID: PendingAllocation] = [:]
    private var pendingByClient: [TURNClient: AllocationID] = [:]
    /// Quota counts, 401 buckets and reservations, when no ``Configuration/sharedLedger`` is set.
    private var ownLedger = TURNLedger()
    private var nextAllocation: UInt64 = 1
    /// Data indications need unique, not secret, transaction ids: a SplitMix64 sequence from a
    /// random seed costs no system call per relayed packet.
    private var indicationState = UInt64.random(in: 0...UInt64.max)
    /// While draining, Allocate gets 403; everything else keeps working.
    public private(set) var isDraining = false

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.nonces = NonceIssuer(secret: configuration.nonceSecret, lifetime: configuration.nonceLifetime)
    }

    // MARK: Events

    /// Bytes from a client: a STUN message or ChannelData.
    public mutating func receive(_ bytes: ByteBuffer, from client: TURNClient, now: TURNTime) -> [Action] {
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return [] }
        if ChannelData.isChannelData(firstByte: first) {
            return relayChannelData(bytes, from: client, now: now).map { [$0] } ?? []
        }
        let message: STUNMessage
        do {
            message = try STUNMessage(decoding: bytes)
        } catch {
            guard let type = error.type, type.messageClass == .request, let transactionID = error.transactionID else { return [] }
            guard admitUnauthenticated(client, now: now) else { return [.report(.rateLimited(client.remote.ip))] }
            var encoder = STUNMessageEncoder(type: type.error, transactionID: transactionID)
            encoder.appendErrorCode(STUNErrorCode.badRequest)
            return [.sendToClient(encoder.message, client)]
        }
        switch (message.type.messageClass, message.type.method) {
        case (.request, .binding): return binding(message, from: client, now: now)
        case (.request, .allocate): return allocate(message, from: client, now: now)
        case (.request, .refresh): return refresh(message, from: client, now: now)
        case (.request, .createPermission): return createPermission(message, from: client, now: now)
        case (.request, .channelBind): return channelBind(message, from: client, now: now)
        case (.request, .connect), (.request, .connectionBind):
            // RFC 6062 TCP allocations are not offered.
            return answer(message, to: client, now: now, error: STUNErrorCode.unsupportedTransportProtocol, auth: nil)
        case (.request, _): return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: nil)
        case (.indication, .send): return sendIndication(message, from: client, now: now).map { [$0] } ?? []
        default: return []
        }
    }

    /// ChannelData from a client: the hot path, one dictionary lookup and one action at most.
    public mutating func relayChannelData(_ bytes: ByteBuffer, from client: TURNClient, now: TURNTime) -> Action? {
        guard let channelData = ChannelData(decoding: bytes),
            let route = channelDataRoute(channelData.channel, from: client, now: now)
        else { return nil }
        return .sendToPeer(channelData.payload, allocation: route.allocation, peer: route.peer)
    }

    /// Where `client`'s ChannelData on channel `number` goes — the allocation whose relay
    /// socket sends it and the peer bound to the channel — or nil when it is dropped (no
    /// allocation, an unbound or expired channel, an expired permission). The decision of
    /// ``relayChannelData(_:from:now:)`` without the bytes: the relay path sends them from
    /// where it read them, with no buffer or action per packet.
    public mutating func channelDataRoute(_ number: UInt16, from client: TURNClient, now: TURNTime) -> (allocation: AllocationID, peer: TransportAddress)? {
        // The cached id when its allocation is still the client's; otherwise the dictionary's.
        if let cached = routeCache[client] {
            var held = false
            let route = withAllocation(cached) { allocation -> (allocation: AllocationID, peer: TransportAddress)? in
                guard allocation.client == client else { return nil }
                held = true
                return Self.route(number, in: &allocation, id: cached, now: now)
            }
            if held { return route }
        }
        guard let id = allocationByClient[client] else { return nil }
        routeCache[client] = id
        return withAllocation(id) { Self.route(number, in: &$0, id: id, now: now) }
    }

    /// The peer bound to channel `number` of `allocation`, while the channel and the peer's
    /// permission last. (`inout`: a copy of the allocation would retain each of its fields.)
    private static func route(_ number: UInt16, in allocation: inout Allocation, id: AllocationID, now: TURNTime) -> (allocation: AllocationID, peer: TransportAddress)? {
        guard let channel = allocation.channels[number], channel.expires > now,
            let permission = allocation.permissions[channel.peer.ip], permission > now
        else { return nil }
        return (id, channel.peer)
    }

    /// A datagram that reached an allocation's relay socket from `peer`.
    public mutating func receiveFromPeer(_ payload: ByteBuffer, peer: TransportAddress, allocation id: AllocationID, now: TURNTime) -> Action? {
        guard let route = peerRoute(peer, allocation: id, now: now) else { return nil }
        if let number = route.channel {
            return .sendChannelDataToClient(ChannelData(channel: number, payload: payload), route.client)
        }
        return .sendToClient(dataIndication(payload, from: peer), route.client)
    }

    /// Where a datagram from `peer` to allocation `id`'s relay socket goes: its client, with
    /// the channel bound to `peer` (nil: it goes as a Data indication) — or nil when it is
    /// dropped (no permission for the peer's address). The decision of
    /// ``receiveFromPeer(_:peer:allocation:now:)`` without the bytes.
    public mutating func peerRoute(_ peer: TransportAddress, allocation id: AllocationID, now: TURNTime) -> (client: TURNClient, channel: UInt16?)? {
        withAllocation(id) { allocation -> (client: TURNClient, channel: UInt16?)? in
            guard let permission = allocation.permissions[peer.ip], permission > now else { return nil }
            if let number = allocation.channelByPeer[peer], let channel = allocation.channels[number], channel.expires > now {
                return (allocation.client, number)
            }
            return (allocation.client, nil)
        }
    }

    /// A Data indication (RFC 8656 §11.4) carrying `payload` from `peer`.
    public mutating func dataIndication(_ payload: ByteBuffer, from peer: TransportAddress) -> ByteBuffer {
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .data, class: .indication), transactionID: nextIndicationID())
        encoder.append(.xorPeerAddress, xorAddress: peer)
        encoder.append(.data, buffer: payload)
        return encoder.message
    }

    /// Runs `body` on the allocation in place. The relay path reads allocations this way:
    /// binding one to a local (`let allocation = allocations[id]`) copies the struct and
    /// retains each of its fields for every relayed packet.
    private mutating func withAllocation<Result>(_ id: AllocationID, _ body: (inout Allocation) -> Result?) -> Result? {
        allocations.withValue(for: id, body) ?? nil
    }

    /// The relay socket of a pending Allocate is open at `relayed`; `reserved` is the port
    /// kept for EVEN-PORT's R bit, if one was asked for.
    public mutating func relayOpened(_ id: AllocationID, relayed: TransportAddress, reserved: TransportAddress? = nil, now: TURNTime) -> [Action] {
        guard let request = pending.removeValue(forKey: id) else {
            var actions: [Action] = [.closeRelay(id)]
            if let reserved { actions.append(.releaseReservation(reserved)) }
            return actions
        }
        pendingByClient[request.client] = nil
        var token: UInt64?
        if let reserved {
            let value = UInt64.random(in: 1...UInt64.max)
            let expires = now.adding(seconds: configuration.reservationLifetime)
            withLedger { $0.keepReservation(value, address: reserved, expires: expires) }
            token = value
        }
        var encoder = STUNMessageEncoder(type: request.message.type.success, transactionID: request.message.transactionID)
        encoder.append(.xorRelayedAddress, xorAddress: relayed)
        if request.dualFamilyUnsupported {
            var value: [UInt8] = [AddressFamily.ipv6.rawValue, 0, 4, 40]
            value.append(contentsOf: Array(STUNErrorCode.reason(STUNErrorCode.addressFamilyNotSupported).utf8))
            encoder.append(.addressErrorCode, bytes: value)
        }
        encoder.append(.lifetime, uint32: UInt32(request.lifetime))
        if let token { encoder.append(.reservationToken, bytes: (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * UInt64($0))) }) }
        encoder.append(.xorMappedAddress, xorAddress: request.client.remote)
        let response = finish(&encoder, request: request.message, auth: request.auth)
        allocations[id] = Allocation(
            id: id, client: request.client, relayed: relayed, auth: request.auth,
            expires: now.adding(seconds: request.lifetime), transactionID: request.message.transactionID,
            cachedResponse: response, cachedUntil: now.adding(seconds: configuration.allocateRetransmissionWindow))
        allocationByClient[request.client] = id
        return [
            .sendToClient(response, request.client),
            .report(.allocated(id, tenant: request.auth.tenant, client: request.client, relayed: relayed)),
        ]
    }

    /// The relay socket could not be opened (no free port, or the reserved one is gone): 508.
    public mutating func relayFailed(_ id: AllocationID, now: TURNTime) -> [Action] {
        guard let request = pending.removeValue(forKey: id) else { return [] }
        pendingByClient[request.client] = nil
        decrementTenant(request.auth.tenant)
        return answer(request.message, to: request.client, now: now, error: STUNErrorCode.insufficientCapacity, auth: request.auth)
    }

    /// Ends what is due at `now`: allocations, permissions, channels, reservations, and
    /// (with strict expiry) allocations whose credential has expired. Call about once a second.
    public mutating func expire(now: TURNTime) -> [Action] {
        var actions: [Action] = []
        for (id, allocation) in allocations {
            if allocation.expires <= now {
                actions += release(id, reason: "expired")
            } else if configuration.strictExpiry, allocation.auth.expiry <= now.unixSeconds {
                actions += release(id, reason: "credential-expired")
            } else {
                allocations[id]?.prune(now: now)
            }
        }
        for address in withLedger({ $0.expire(now: now) }) { actions.append(.releaseReservation(address)) }
        return actions
    }

    /// Ends every allocation of `tenant` (suspended or deleted).
    public mutating func endAllocations(tenant: String) -> [Action] {
        var actions: [Action] = []
        for (id, allocation) in allocations where allocation.auth.tenant == tenant {
            actions += release(id, reason: "tenant-ended")
        }
        for (id, request) in pending where request.auth.tenant == tenant {
            pending[id] = nil
            pendingByClient[request.client] = nil
            decrementTenant(tenant)
        }
        return actions
    }

    /// A TCP or TLS client connection closed: its allocation ends with it (RFC 8656 §3.1).
    public mutating func connectionClosed(_ client: TURNClient) -> [Action] {
        if let id = pendingByClient.removeValue(forKey: client), let request = pending.removeValue(forKey: id) {
            decrementTenant(request.auth.tenant)
        }
        guard let id = allocationByClient[client] else { return [] }
        return release(id, reason: "connection-closed")
    }

    /// Stops taking new allocations (Allocate gets 403); existing ones keep working.
    public mutating func startDraining() { isDraining = true }

    /// Ends every allocation now (the end of a drain).
    public mutating func endAll() -> [Action] {
        var actions: [Action] = []
        for id in allocations.ids { actions += release(id, reason: "shutdown") }
        return actions
    }

    // MARK: Inspection

    /// Open allocations.
    public var allocationCount: Int { allocations.count }
    /// Open allocations by tenant.
    public var allocationsByTenant: [String: Int] {
        allocations.reduce(into: [:]) { $0[$1.value.auth.tenant, default: 0] += 1 }
    }
    /// Live permissions and channel bindings over all allocations.
    public var permissionAndChannelCounts: (permissions: Int, channels: Int) {
        allocations.reduce(into: (0, 0)) { counts, entry in
            counts.0 += entry.value.permissions.count
            counts.1 += entry.value.channels.count
        }
    }
    /// The tenant of an allocation (for the shell's metrics).
    public func tenant(of id: AllocationID) -> String? { allocations[id]?.auth.tenant ?? pending[id]?.auth.tenant }
    /// The allocation a client's 5-tuple holds.
    public func allocation(for client: TURNClient) -> AllocationID? { allocationByClient[client] }
    /// Whether a client's 5-tuple holds an allocation or is opening one.
    public func hasAllocation(_ client: TURNClient) -> Bool { allocationByClient[client] != nil || pendingByClient[client] != nil }
    /// The relayed address of an allocation.
    public func relayedAddress(of id: AllocationID) -> TransportAddress? { allocations[id]?.relayed }
    /// Whether `peer`'s IP has a live permission on the allocation.
    public func hasPermission(_ id: AllocationID, peer: IPAddress, now: TURNTime) -> Bool {
        (allocations[id]?.permissions[peer]).map { $0 > now } ?? false
    }
    /// The time an allocation expires.
    public func expiry(of id: AllocationID) -> TURNTime? { allocations[id]?.expires }

    // MARK: Requests

    private mutating func binding(_ message: STUNMessage, from client: TURNClient, now: TURNTime) -> [Action] {
        if !message.unknownComprehensionRequired.isEmpty {
            return answer(message, to: client, now: now, error: STUNErrorCode.unknownAttribute, auth: nil, unknown: message.unknownComprehensionRequired)
        }
        guard admitUnauthenticated(client, now: now) else { return [.report(.rateLimited(client.remote.ip))] }
        var encoder = STUNMessageEncoder(type: message.type.success, transactionID: message.transactionID)
        encoder.append(.xorMappedAddress, xorAddress: client.remote)
        return [.sendToClient(finish(&encoder, request: message, auth: nil), client)]
    }

    private mutating func allocate(_ message: STUNMessage, from client: TURNClient, now: TURNTime) -> [Action] {
        let auth: Authenticated
        switch authenticate(message, from: client, existing: nil, now: now) {
        case .success(let value): auth = value
        case .failure(let rejection): return rejection.actions
        }
        if let id = allocationByClient[client], let allocation = allocations[id] {
            if allocation.transactionID == message.transactionID, allocation.cachedUntil > now {
                return [.sendToClient(allocation.cachedResponse, client)]
            }
            return answer(message, to: client, now: now, error: STUNErrorCode.allocationMismatch, auth: auth)
        }
        if let id = pendingByClient[client], let request = pending[id] {
            if request.message.transactionID == message.transactionID { return [] }
            return answer(message, to: client, now: now, error: STUNErrorCode.allocationMismatch, auth: auth)
        }
        if !message.unknownComprehensionRequired.isEmpty {
            return answer(message, to: client, now: now, error: STUNErrorCode.unknownAttribute, auth: auth, unknown: message.unknownComprehensionRequired)
        }
        guard let transport = message.requestedTransport else {
            return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
        }
        guard transport == 17 else {
            return answer(message, to: client, now: now, error: STUNErrorCode.unsupportedTransportProtocol, auth: auth)
        }
        if message.dontFragment, !configuration.supportsDontFragment {
            return answer(message, to: client, now: now, error: STUNErrorCode.unknownAttribute, auth: auth, unknown: [.dontFragment])
        }
        let token = message.reservationToken
        let evenPort = message.evenPort
        let requestedFamily = message.requestedAddressFamily
        let additionalFamily = message.additionalAddressFamily
        if token != nil, evenPort != nil || requestedFamily != nil {
            return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
        }
        if requestedFamily != nil, additionalFamily != nil {
            return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
        }
        var family = AddressFamily.ipv4
        if let requestedFamily {
            guard let value = AddressFamily(rawValue: requestedFamily), configuration.relayFamilies.contains(value) else {
                return answer(message, to: client, now: now, error: STUNErrorCode.addressFamilyNotSupported, auth: auth)
            }
            family = value
        }
        var dualFamilyUnsupported = false
        if let additionalFamily {
            guard additionalFamily == AddressFamily.ipv6.rawValue else {
                return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
            }
            // One relay per allocation: the IPv6 half of a dual allocation is declined.
            dualFamilyUnsupported = true
        }
        if isDraining {
            return answer(message, to: client, now: now, error: STUNErrorCode.forbidden, reason: "Server Shutting Down", auth: auth)
        }
        let quota = configuration.allocationQuotaPerTenant
        guard withLedger({ $0.admitAllocation(tenant: auth.tenant, quota: quota) }) else {
            return answer(message, to: client, now: now, error: STUNErrorCode.allocationQuotaReached, auth: auth)
                + [.report(.quotaReached(tenant: auth.tenant))]
        }
        var reservedAddress: TransportAddress?
        if let token {
            guard let address = withLedger({ $0.takeReservation(token, now: now) }) else {
                decrementTenant(auth.tenant)
                return answer(message, to: client, now: now, error: STUNErrorCode.insufficientCapacity, auth: auth)
            }
            reservedAddress = address
            family = address.ip.family
        }
        let id = AllocationID(rawValue: nextAllocation)
        nextAllocation &+= 1
        let lifetime = grantedLifetime(message.lifetime)
        pending[id] = PendingAllocation(
            client: client, message: message, auth: auth, lifetime: lifetime, dualFamilyUnsupported: dualFamilyUnsupported)
        pendingByClient[client] = id
        return [
            .openRelay(
                RelayRequest(
                    allocation: id, tenant: auth.tenant, family: family, evenPort: evenPort != nil,
                    reserveNextPort: evenPort == true, reservedAddress: reservedAddress))
        ]
    }

    /// What Refresh, CreatePermission and ChannelBind check first: the credentials,
    /// comprehension-required attributes we do not know (420), and that the client has an
    /// allocation (437).
    private mutating func clientsAllocation(
        _ message: STUNMessage, from client: TURNClient, now: TURNTime
    ) -> Result<(Authenticated, AllocationID, Allocation), Refusal> {
        let existing = allocationByClient[client]
        let auth: Authenticated
        switch authenticate(message, from: client, existing: existing.flatMap { allocations[$0] }, now: now) {
        case .success(let value): auth = value
        case .failure(let rejection): return .failure(Refusal(actions: rejection.actions))
        }
        if !message.unknownComprehensionRequired.isEmpty {
            return .failure(Refusal(actions: answer(
                message, to: client, now: now, error: STUNErrorCode.unknownAttribute, auth: auth, unknown: message.unknownComprehensionRequired)))
        }
        guard let id = existing, let allocation = allocations[id] else {
            return .failure(Refusal(actions: answer(message, to: client, now: now, error: STUNErrorCode.allocationMismatch, auth: auth)))
        }
        return .success((auth, id, allocation))
    }

    /// The answer to a request refused before its method's own checks.
    struct Refusal: Error {
        var actions: [Action]
    }

    private mutating func refresh(_ message: STUNMessage, from client: TURNClient, now: TURNTime) -> [Action] {
        let (auth, id, allocation): (Authenticated, AllocationID, Allocation)
        switch clientsAllocation(message, from: client, now: now) {
        case .success(let found): (auth, id, allocation) = found
        case .failure(let refusal): return refusal.actions
        }
        if let requestedFamily = message.requestedAddressFamily, requestedFamily != allocation.relayed.ip.family.rawValue {
            return answer(message, to: client, now: now, error: STUNErrorCode.peerAddressFamilyMismatch, auth: auth)
        }
        if message.lifetime == 0 {
            var actions = answer(message, to: client, now: now, error: nil, auth: auth) { $0.append(.lifetime, uint32: 0) }
            actions += release(id, reason: "refresh-zero")
            return actions
        }
        let lifetime = grantedLifetime(message.lifetime)
        allocations[id]?.expires = now.adding(seconds: lifetime)
        return answer(message, to: client, now: now, error: nil, auth: auth) { $0.append(.lifetime, uint32: UInt32(lifetime)) }
    }

    private mutating func createPermission(_ message: STUNMessage, from client: TURNClient, now: TURNTime) -> [Action] {
        let (auth, id, allocation): (Authenticated, AllocationID, Allocation)
        switch clientsAllocation(message, from: client, now: now) {
        case .success(let found): (auth, id, allocation) = found
        case .failure(let refusal): return refusal.actions
        }
        let peers = message.xorAddresses(.xorPeerAddress)
        guard !peers.isEmpty, peers.count == message.attributes.filter({ $0.type == .xorPeerAddress }).count else {
            return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
        }
        for peer in peers {
            if peer.ip.family != allocation.relayed.ip.family {
                return answer(message, to: client, now: now, error: STUNErrorCode.peerAddressFamilyMismatch, auth: auth)
            }
            if let refusal = configuration.policy.refusal(for: peer.ip) {
                var actions = answer(message, to: client, now: now, error: STUNErrorCode.forbidden, auth: auth)
                actions.append(.report(.peerRefused(tenant: auth.tenant, reason: refusal)))
                return actions
            }
        }
        let until = now.adding(seconds: configuration.permissionLifetime)
        for peer in peers { allocations[id]?.permissions[peer.ip] = until }
        return answer(message, to: client, now: now, error: nil, auth: auth)
    }

    private mutating func channelBind(_ message: STUNMessage, from client: TURNClient, now: TURNTime) -> [Action] {
        let (auth, id, allocation): (Authenticated, AllocationID, Allocation)
        switch clientsAllocation(message, from: client, now: now) {
        case .success(let found): (auth, id, allocation) = found
        case .failure(let refusal): return refusal.actions
        }
        guard let number = message.channelNumber, let peer = message.xorAddress(.xorPeerAddress),
            ChannelData.acceptedChannelRange.contains(number)
        else {
            return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
        }
        if peer.ip.family != allocation.relayed.ip.family {
            return answer(message, to: client, now: now, error: STUNErrorCode.peerAddressFamilyMismatch, auth: auth)
        }
        if let refusal = configuration.policy.refusal(for: peer) {
            var actions = answer(message, to: client, now: now, error: STUNErrorCode.forbidden, auth: auth)
            actions.append(.report(.peerRefused(tenant: auth.tenant, reason: refusal)))
            return actions
        }
        if let bound = allocation.channels[number], bound.peer != peer, bound.expires > now {
            return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
        }
        if let other = allocation.channelByPeer[peer], other != number, (allocation.channels[other]?.expires).map({ $0 > now }) ?? false {
            return answer(message, to: client, now: now, error: STUNErrorCode.badRequest, auth: auth)
        }
        allocations[id]?.bind(number, to: peer, until: now.adding(seconds: configuration.channelLifetime))
        allocations[id]?.permissions[peer.ip] = now.adding(seconds: configuration.permissionLifetime)
        return answer(message, to: client, now: now, error: nil, auth: auth)
    }

    private func sendIndication(_ message: STUNMessage, from client: TURNClient, now: TURNTime) -> Action? {
        guard message.unknownComprehensionRequired.isEmpty, let id = allocationByClient[client], let allocation = allocations[id],
            let peer = message.xorAddress(.xorPeerAddress), let data = message.data,
            let permission = allocation.permissions[peer.ip], permission > now, configuration.policy.permits(peer)
        else { return nil }
        return .sendToPeer(data, allocation: id, peer: peer)
    }

    // MARK: Authentication

    struct Authenticated: Sendable {
        var username: String
        var key: [UInt8]
        var tenant: String
        var expiry: Int64
        var sha256: Bool
    }

    struct Rejection: Error {
        var actions: [Action]
    }

    private mutating func authenticate(
        _ message: STUNMessage, from client: TURNClient, existing: Allocation?, now: TURNTime
    ) -> Result<Authenticated, Rejection> {
        func reject(_ code: Int, reason: String, challenge: Bool, _ machine: inout TURNServerMachine) -> Rejection {
            guard machine.admitUnauthenticated(client, now: now) else {
                return Rejection(actions: [.report(.rateLimited(client.remote.ip)), .report(.authenticationFailed(reason: reason))])
            }
            var encoder = STUNMessageEncoder(type: message.type.error, transactionID: message.transactionID)
            encoder.appendErrorCode(code)
            if challenge {
                encoder.append(.realm, string: machine.configuration.realm)
                encoder.append(.nonce, string: machine.nonces.make(now: now.unixSeconds))
            }
            if let software = machine.configuration.software { encoder.append(.software, string: software) }
            if message.hasFingerprint { encoder.appendFingerprint() }
            return Rejection(actions: [.sendToClient(encoder.message, client), .report(.authenticationFailed(reason: reason))])
        }
        func challenge(_ code: Int, reason: String, _ machine: inout TURNServerMachine) -> Rejection {
            reject(code, reason: reason, challenge: true, &machine)
        }
        guard message.hasIntegrity else { return .failure(challenge(STUNErrorCode.unauthorized, reason: "missing", &self)) }
        guard let username = message.username, let realm = message.realm, let nonce = message.nonce else {
            return .failure(reject(STUNErrorCode.badRequest, reason: "malformed", challenge: false, &self))
        }
        guard nonces.validate(nonce, now: now.unixSeconds) == .valid else {
            return .failure(challenge(STUNErrorCode.staleNonce, reason: "stale-nonce", &self))
        }
        guard realm == configuration.realm else { return .failure(challenge(STUNErrorCode.unauthorized, reason: "realm", &self)) }
        if let existing {
            guard existing.auth.username == username else {
                return .failure(reject(STUNErrorCode.wrongCredentials, reason: "wrong-credentials", challenge: false, &self))
            }
            guard case .valid(let sha256) = message.checkIntegrity(key: existing.auth.key) else {
                return .failure(challenge(STUNErrorCode.unauthorized, reason: "bad-credential", &self))
            }
            if configuration.strictExpiry, existing.auth.expiry <= now.unixSeconds {
                return .failure(challenge(STUNErrorCode.unauthorized, reason: "expired", &self))
            }
            var auth = existing.auth
            auth.sha256 = sha256
            return .success(auth)
        }
        guard let credentials = TURNRESTCredentials(username: username) else {
            return .failure(challenge(STUNErrorCode.unauthorized, reason: "bad-username", &self))
        }
        guard credentials.expiry > now.unixSeconds else {
            return .failure(challenge(STUNErrorCode.unauthorized, reason: "expired", &self))
        }
        for secret in configuration.secrets {
            let password = TURNRESTCredentials.password(secret: secret, username: username)
            let key = LongTermCredentials.key(username: username, realm: configuration.realm, password: password)
            if case .valid(let sha256) = message.checkIntegrity(key: key) {
                return .success(
                    Authenticated(username: username, key: key, tenant: credentials.tenant, expiry: credentials.expiry, sha256: sha256))
            }
        }
        return .failure(challenge(STUNErrorCode.unauthorized, reason: "bad-credential", &self))
    }

    // MARK: Answers

    /// An answer to an authenticated (or authenticating) request; with `error` nil a
    /// success response whose attributes `body` writes.
    private mutating func answer(
        _ request: STUNMessage, to client: TURNClient, now: TURNTime, error: Int?, reason: String? = nil, auth: Authenticated?,
        unknown: [STUNAttributeType] = [], body: (inout STUNMessageEncoder) -> Void = { _ in }
    ) -> [Action] {
        if auth == nil, !admitUnauthenticated(client, now: now) { return [.report(.rateLimited(client.remote.ip))] }
        var encoder = STUNMessageEncoder(type: error == nil ? request.type.success : request.type.error, transactionID: request.transactionID)
        if let error { encoder.appendErrorCode(error, reason: reason) }
        if !unknown.isEmpty { encoder.appendUnknownAttributes(unknown) }
        body(&encoder)
        return [.sendToClient(finish(&encoder, request: request, auth: auth), client)]
    }

    /// SOFTWARE (if configured), the integrity attribute the client used, FINGERPRINT if it sent one.
    private func finish(_ encoder: inout STUNMessageEncoder, request: STUNMessage, auth: Authenticated?) -> ByteBuffer {
        if let software = configuration.software { encoder.append(.software, string: software) }
        if let auth {
            if auth.sha256 { encoder.appendMessageIntegritySHA256(key: auth.key) } else { encoder.appendMessageIntegrity(key: auth.key) }
        }
        if request.hasFingerprint { encoder.appendFingerprint() }
        return encoder.message
    }

    /// Whether the source address may get one more unauthenticated answer (token bucket).
    private mutating func admitUnauthenticated(_ client: TURNClient, now: TURNTime) -> Bool {
        let (perSecond, burst) = (configuration.unauthenticatedPerSecond, configuration.unauthenticatedBurst)
        return withLedger { $0.admitUnauthenticated(client.remote.ip, now: now, perSecond: perSecond, burst: burst) }
    }

    /// The shared ledger under its lock, or this machine's own.
    private mutating func withLedger<Result>(_ body: (inout TURNLedger) -> Result) -> Result {
        if let shared = configuration.sharedLedger { return shared.withLedger(body) }
        return body(&ownLedger)
    }

    // MARK: Bookkeeping

    private mutating func nextIndicationID() -> TransactionID {
        indicationState &+= 0x9E37_79B9_7F4A_7C15
        var z = indicationState
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return TransactionID(high: UInt32(truncatingIfNeeded: indicationState >> 32), low: z)
    }

    private func grantedLifetime(_ requested: UInt32?) -> Int64 {
        guard let requested else { return configuration.defaultLifetime }
        return min(max(Int64(requested), configuration.defaultLifetime), configuration.maxLifetime)
    }

    private mutating func release(_ id: AllocationID, reason: String) -> [Action] {
        guard let allocation = allocations.removeValue(forKey: id) else { return [] }
        if allocationByClient[allocation.client] == id { allocationByClient[allocation.client] = nil }
        decrementTenant(allocation.auth.tenant)
        return [.closeRelay(id), .report(.released(id, tenant: allocation.auth.tenant, reason: reason))]
    }

    private mutating func decrementTenant(_ tenant: String) {
        withLedger { $0.allocationEnded(tenant: tenant) }
    }
}

struct Allocation: Sendable {
    struct Channel: Sendable {
        var peer: TransportAddress
        var expires: TURNTime
    }

    let id: AllocationID
    let client: TURNClient
    let relayed: TransportAddress
    var auth: TURNServerMachine.Authenticated
    var expires: TURNTime
    let transactionID: TransactionID
    let cachedResponse: ByteBuffer
    let cachedUntil: TURNTime
    var permissions = SmallMap<IPAddress, TURNTime>()
    var channels = SmallMap<UInt16, Channel>()
    var channelByPeer = SmallMap<TransportAddress, UInt16>()

    mutating func bind(_ number: UInt16, to peer: TransportAddress, until: TURNTime) {
        channels[number] = Channel(peer: peer, expires: until)
        channelByPeer[peer] = number
    }

    mutating func prune(now: TURNTime) {
        if permissions.contains(where: { $1 <= now }) { permissions.removeAll { $1 <= now } }
        guard channels.contains(where: { $1.expires <= now }) else { return }
        for (number, channel) in channels.pairs where channel.expires <= now {
            channels[number] = nil
            if channelByPeer[channel.peer] == number { channelByPeer[channel.peer] = nil }
        }
    }
}

struct PendingAllocation: Sendable {
    var client: TURNClient
    var message: STUNMessage
    var auth: TURNServerMachine.Authenticated
    var lifetime: Int64
    var dualFamilyUnsupported: Bool
}
