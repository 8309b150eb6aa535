import NIOCore
import STUN
import Testing

/// Drives ``TURNServerMachine`` with requests a TURN client would send; no sockets.
struct MachineHarness {
    static let secrets = ["current-secret", "older-secret"]
    static let start = TURNTime.seconds(1_800_000_000)
    static let serverAddress = TransportAddress(ip: .v4(IPv4Address(203, 0, 113, 7)), port: 3478)
    static let relayIP = IPAddress.v4(IPv4Address(203, 0, 113, 7))

    var machine: TURNServerMachine
    var now = MachineHarness.start
    var nonce = ""
    var nextRelayPort: UInt16 = 50_000

    init(configure: (inout TURNServerMachine.Configuration) -> Void = { _ in }) {
        var configuration = TURNServerMachine.Configuration()
        configuration.secrets = Self.secrets
        configuration.nonceSecret = Array("nonce secret".utf8)
        configuration.policy = PeerAddressPolicy(ownAddresses: [Self.relayIP])
        configure(&configuration)
        machine = TURNServerMachine(configuration: configuration)
    }

    static func client(_ port: UInt16 = 40_000, transport: TURNTransport = .udp) -> TURNClient {
        TURNClient(transport: transport, local: serverAddress, remote: TransportAddress(ip: .v4(IPv4Address(198, 51, 100, 1)), port: port))
    }

    static func username(tenant: String = "acme", peer: String = "alice", expiresIn: Int64 = 3600, now: TURNTime = start) -> String {
        "\(now.unixSeconds + expiresIn):\(tenant):\(peer)"
    }

    static func key(username: String, secret: String = secrets[0]) -> [UInt8] {
        LongTermCredentials.key(username: username, realm: "switchboard", password: TURNRESTCredentials.password(secret: secret, username: username))
    }

    /// A request; with `username` it is authenticated with the harness's current nonce.
    func request(
        _ method: STUNMethod, username: String? = nil, secret: String = MachineHarness.secrets[0], nonce: String? = nil,
        transactionID: TransactionID = .random(), fingerprint: Bool = false,
        _ attributes: (inout STUNMessageEncoder) -> Void = { _ in }
    ) -> ByteBuffer {
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: method, class: .request), transactionID: transactionID)
        attributes(&encoder)
        if let username {
            encoder.append(.username, string: username)
            encoder.append(.realm, string: "switchboard")
            encoder.append(.nonce, string: nonce ?? self.nonce)
            encoder.appendMessageIntegrity(key: Self.key(username: username, secret: secret))
        }
        if fingerprint { encoder.appendFingerprint() }
        return encoder.message
    }

    static func udp(_ encoder: inout STUNMessageEncoder) {
        encoder.append(.requestedTransport, bytes: [17, 0, 0, 0])
    }

    /// Sends `bytes`, returns the actions.
    mutating func send(_ bytes: ByteBuffer, from client: TURNClient = client()) -> [TURNServerMachine.Action] {
        machine.receive(bytes, from: client, now: now)
    }

    /// Sends `bytes` and decodes the one response to the client.
    mutating func respond(_ bytes: ByteBuffer, from client: TURNClient = client()) throws -> STUNMessage {
        let responses = send(bytes, from: client).compactMap { action -> ByteBuffer? in
            if case .sendToClient(let bytes, let to) = action, to == client { return bytes }
            return nil
        }
        try #require(responses.count == 1, "expected one response")
        return try STUNMessage(decoding: responses[0])
    }

    /// Fetches a nonce with an unauthenticated request, as a client does first.
    mutating func learnNonce(from client: TURNClient = client()) throws {
        let challenge = try respond(request(.allocate, Self.udp), from: client)
        nonce = try #require(challenge.nonce)
    }

    /// A complete allocation: 401, then the authenticated Allocate, the relay opened, success.
    mutating func allocate(from client: TURNClient = client(), username: String = username()) throws -> (AllocationID, STUNMessage) {
        if nonce.isEmpty { try learnNonce(from: client) }
        let actions = send(request(.allocate, username: username, Self.udp), from: client)
        guard case .openRelay(let relay)? = actions.first else {
            Issue.record("no openRelay in \(actions)")
            throw HarnessError()
        }
        let relayed = TransportAddress(ip: Self.relayIP, port: nextRelayPort)
        nextRelayPort += 2
        let opened = machine.relayOpened(relay.allocation, relayed: relayed, now: now)
        guard case .sendToClient(let bytes, _)? = opened.first else { throw HarnessError() }
        return (relay.allocation, try STUNMessage(decoding: bytes))
    }

    mutating func advance(seconds: Int64) -> [TURNServerMachine.Action] {
        now = now.adding(seconds: seconds)
        return machine.expire(now: now)
    }
}

struct HarnessError: Error {}

extension [TURNServerMachine.Action] {
    var closedRelays: [AllocationID] {
        compactMap { if case .closeRelay(let id) = $0 { id } else { nil } }
    }
    var peerRefusals: [PeerAddressPolicy.Refusal] {
        compactMap { if case .report(.peerRefused(_, let reason)) = $0 { reason } else { nil } }
    }
}

@Suite struct TURNServerMachineTests {
    let peer = TransportAddress(ip: .v4(IPv4Address(8, 8, 8, 8)), port: 5000)

    @Test func bindingAnswersWithTheReflexiveAddress() throws {
        var harness = MachineHarness()
        let response = try harness.respond(harness.request(.binding, fingerprint: true))
        #expect(response.type == STUNMessageType(method: .binding, class: .successResponse))
        #expect(response.xorAddress(.xorMappedAddress) == MachineHarness.client().remote)
        #expect(response.hasFingerprint)
        #expect(response.software == nil)
    }

    @Test func allocateChallengesThenSucceeds() throws {
        var harness = MachineHarness()
        let challenge = try harness.respond(harness.request(.allocate, MachineHarness.udp))
        #expect(challenge.errorCode?.code == 401)
        #expect(challenge.realm == "switchboard")
        #expect(challenge.nonce != nil)
        #expect(!challenge.hasIntegrity)
        harness.nonce = try #require(challenge.nonce)
        let username = MachineHarness.username()
        let (id, success) = try harness.allocate(username: username)
        #expect(success.type == STUNMessageType(method: .allocate, class: .successResponse))
        #expect(success.xorAddress(.xorRelayedAddress) == TransportAddress(ip: MachineHarness.relayIP, port: 50_000))
        #expect(success.xorAddress(.xorMappedAddress) == MachineHarness.client().remote)
        #expect(success.lifetime == 600)
        #expect(success.checkIntegrity(key: MachineHarness.key(username: username)) == .valid(sha256: false))
        #expect(harness.machine.allocationCount == 1)
        #expect(harness.machine.tenant(of: id) == "acme")
        #expect(harness.machine.allocationsByTenant == ["acme": 1])
    }

    @Test func anyConfiguredSecretVerifiesAndOthersDoNot() throws {
        var harness = MachineHarness()
        try harness.learnNonce()
        let username = MachineHarness.username()
        let older = harness.send(harness.request(.allocate, username: username, secret: "older-secret", MachineHarness.udp))
        guard case .openRelay? = older.first else {
            Issue.record("the older secret was refused: \(older)")
            return
        }
        let wrong = try harness.respond(harness.request(.allocate, username: username, secret: "wrong", MachineHarness.udp), from: MachineHarness.client(40_001))
        #expect(wrong.errorCode?.code == 401)
        #expect(wrong.nonce != nil)
    }

    @Test func expiredAndMalformedUsernamesGet401() throws {
        var harness = MachineHarness()
        try harness.learnNonce()
        let expired = MachineHarness.username(expiresIn: -1)
        #expect(try harness.respond(harness.request(.allocate, username: expired, MachineHarness.udp)).errorCode?.code == 401)
        #expect(try harness.respond(harness.request(.allocate, username: "alice", MachineHarness.udp)).errorCode?.code == 401)
    }

    @Test func staleNonceGets438WithAFreshOne() throws {
        var harness = MachineHarness()
        try harness.learnNonce()
        let old = harness.nonce
        harness.now = harness.now.adding(seconds: 601)
        let stale = try harness.respond(harness.request(.allocate, username: MachineHarness.username(now: harness.now), MachineHarness.udp))
        #expect(stale.errorCode?.code == 438)
        let fresh = try #require(stale.nonce)
        #expect(fresh != old)
        harness.nonce = fresh
        let actions = harness.send(harness.request(.allocate, username: MachineHarness.username(now: harness.now), MachineHarness.udp))
        guard case .openRelay? = actions.first else {
            Issue.record("the fresh nonce was refused")
            return
        }
    }

    @Test func allocateRequestChecks() throws {
        var harness = MachineHarness()
        try harness.learnNonce()
        let user = MachineHarness.username()
        #expect(try harness.respond(harness.request(.allocate, username: user)).errorCode?.code == 400)
        let tcp = try harness.respond(harness.request(.allocate, username: user) { $0.append(.requestedTransport, bytes: [6, 0, 0, 0]) })
        #expect(tcp.errorCode?.code == 442)
        #expect(tcp.checkIntegrity(key: MachineHarness.key(username: user)) == .valid(sha256: false))
        let dontFragment = try harness.respond(
            harness.request(.allocate, username: user) {
                MachineHarness.udp(&$0)
                $0.append(.dontFragment, bytes: [])
            })
        #expect(dontFragment.errorCode?.code == 420)
        #expect(dontFragment.unknownAttributes == [.dontFragment])
        let unknown = try harness.respond(
            harness.request(.allocate, username: user) {
                MachineHarness.udp(&$0)
                $0.append(STUNAttributeType(rawValue: 0x7777), bytes: [0])
            })
        #expect(unknown.errorCode?.code == 420)
        #expect(unknown.unknownAttributes == [STUNAttributeType(rawValue: 0x7777)])
        let tokenAndEven = try harness.respond(
            harness.request(.allocate, username: user) {
                MachineHarness.udp(&$0)
                $0.append(.evenPort, bytes: [0x00])
                $0.append(.reservationToken, bytes: [1, 2, 3, 4, 5, 6, 7, 8])
            })
        #expect(tokenAndEven.errorCode?.code == 400)
        let unknownToken = try harness.respond(
            harness.request(.allocate, username: user) {
                MachineHarness.udp(&$0)
                $0.append(.reservationToken, bytes: [1, 2, 3, 4, 5, 6, 7, 8])
            })
        #expect(unknownToken.errorCode?.code == 508)
        let ipv6 = try harness.respond(
            harness.request(.allocate, username: user) {
                MachineHarness.udp(&$0)
                $0.append(.requestedAddressFamily, bytes: [2, 0, 0, 0])
            })
        #expect(ipv6.errorCode?.code == 440)
        let both = try harness.respond(
            harness.request(.allocate, username: user) {
                MachineHarness.udp(&$0)
                $0.append(.requestedAddressFamily, bytes: [1, 0, 0, 0])
                $0.append(.additionalAddressFamily, bytes: [2, 0, 0, 0])
            })
        #expect(both.errorCode?.code == 400)
        let connect = try harness.respond(harness.request(.connect, username: user))
        #expect(connect.errorCode?.code == 442)
    }

    @Test func secondAllocateIs437AndARetransmissionGetsTheSameAnswer() throws {
        var harness = MachineHarness()
        try harness.learnNonce()
        let user = MachineHarness.username()
        let transaction = TransactionID.random()
        let first = harness.send(harness.request(.allocate, username: user, transactionID: transaction, MachineHarness.udp))
        guard case .openRelay(let relay)? = first.first else { throw HarnessError() }
        // retransmitted while the relay is opening: nothing
        #expect(harness.send(harness.request(.allocate, username: user, transactionID: transaction, MachineHarness.udp)).isEmpty)
        let opened = harness.machine.relayOpened(relay.allocation, relayed: TransportAddress(ip: MachineHarness.relayIP, port: 50_000), now: harness.now)
        guard case .sendToClient(let original, _)? = opened.first else { throw HarnessError() }
        let again = harness.send(harness.request(.allocate, username: user, transactionID: transaction, MachineHarness.udp))
        guard case .sendToClient(let repeated, _)? = again.first else { throw HarnessError() }
        #expect(repeated == original)
        let other = try harness.respond(harness.request(.allocate, username: user, MachineHarness.udp))
        #expect(other.errorCode?.code == 437)
    }

    @Test func quotaPerTenantGives486() throws {
        var harness = MachineHarness { $0.allocationQuotaPerTenant = 2 }
        _ = try harness.allocate(from: MachineHarness.client(1))
        _ = try harness.allocate(from: MachineHarness.client(2))
        let refused = harness.send(harness.request(.allocate, username: MachineHarness.username(), MachineHarness.udp), from: MachineHarness.client(3))
        guard case .sendToClient(let bytes, _)? = refused.first else { throw HarnessError() }
        #expect(try STUNMessage(decoding: bytes).errorCode?.code == 486)
        #expect(refused.contains { if case .report(.quotaReached(tenant: "acme")) = $0 { true } else { false } })
        let otherTenant = harness.send(harness.request(.allocate, username: MachineHarness.username(tenant: "globex"), MachineHarness.udp), from: MachineHarness.client(4))
        guard case .openRelay? = otherTenant.first else {
            Issue.record("another tenant was refused")
            return
        }
    }

    @Test func drainingRefusesNewAllocationsWith403() throws {
        var harness = MachineHarness()
        let (id, _) = try harness.allocate()
        harness.machine.startDraining()
        let refused = try harness.respond(harness.request(.allocate, username: MachineHarness.username(), MachineHarness.udp), from: MachineHarness.client(9))
        #expect(refused.errorCode?.code == 403)
        let refresh = try harness.respond(harness.request(.refresh, username: MachineHarness.username()))
        #expect(refresh.type.messageClass == .successResponse)
        #expect(harness.machine.endAll().closedRelays == [id])
    }

    @Test func refreshLifetimes() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        let (id, _) = try harness.allocate(username: user)
        let long = try harness.respond(harness.request(.refresh, username: user) { $0.append(.lifetime, uint32: 7200) })
        #expect(long.lifetime == 3600)
        #expect(harness.machine.expiry(of: id) == harness.now.adding(seconds: 3600))
        let plain = try harness.respond(harness.request(.refresh, username: user))
        #expect(plain.lifetime == 600)
        let wrongFamily = try harness.respond(harness.request(.refresh, username: user) { $0.append(.requestedAddressFamily, bytes: [2, 0, 0, 0]) })
        #expect(wrongFamily.errorCode?.code == 443)
        let otherUser = try harness.respond(harness.request(.refresh, username: MachineHarness.username(peer: "mallory")))
        #expect(otherUser.errorCode?.code == 441)
        let actions = harness.send(harness.request(.refresh, username: user) { $0.append(.lifetime, uint32: 0) })
        #expect(actions.closedRelays == [id])
        #expect(harness.machine.allocationCount == 0)
        let after = try harness.respond(harness.request(.refresh, username: user))
        #expect(after.errorCode?.code == 437)
    }

    @Test func allocationExpiresWithoutRefresh() throws {
        var harness = MachineHarness()
        let (id, _) = try harness.allocate()
        #expect(harness.advance(seconds: 599).closedRelays.isEmpty)
        #expect(harness.advance(seconds: 1).closedRelays == [id])
        #expect(harness.machine.allocationCount == 0)
    }

    @Test func expiredCredentialKeepsRefreshingUnlessStrict() throws {
        for strict in [false, true] {
            var harness = MachineHarness { $0.strictExpiry = strict }
            let user = MachineHarness.username(expiresIn: 100)
            let (id, _) = try harness.allocate(username: user)
            let closed = harness.advance(seconds: 100).closedRelays
            #expect(closed == (strict ? [id] : []))
            if !strict {
                harness.nonce = ""
                try harness.learnNonce(from: MachineHarness.client(999))
                let refresh = try harness.respond(harness.request(.refresh, username: user))
                #expect(refresh.type.messageClass == .successResponse)
            }
        }
    }

    @Test func permissionsGateTrafficBothWays() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        let (id, _) = try harness.allocate(username: user)
        let payload = ByteBuffer(bytes: [1, 2, 3])
        // no permission yet: nothing is relayed either way
        #expect(harness.machine.receiveFromPeer(payload, peer: peer, allocation: id, now: harness.now).isNone)
        var send = STUNMessageEncoder(type: STUNMessageType(method: .send, class: .indication), transactionID: .random())
        send.append(.xorPeerAddress, xorAddress: peer)
        send.append(.data, buffer: payload)
        #expect(harness.send(send.message).isEmpty)

        let created = try harness.respond(harness.request(.createPermission, username: user) { $0.append(.xorPeerAddress, xorAddress: peer) })
        #expect(created.type.messageClass == .successResponse)
        let out = harness.send(send.message)
        guard case .sendToPeer(let sent, let from, let to)? = out.first else {
            Issue.record("Send indication not relayed: \(out)")
            return
        }
        #expect(sent == payload && from == id && to == peer)
        // the permission is per IP: another port of the same peer gets through
        let otherPort = TransportAddress(ip: peer.ip, port: 6000)
        guard case .sendToClient(let indication, _)? = harness.machine.receiveFromPeer(payload, peer: otherPort, allocation: id, now: harness.now)
        else {
            Issue.record("peer data not relayed")
            return
        }
        let data = try STUNMessage(decoding: indication)
        #expect(data.type == STUNMessageType(method: .data, class: .indication))
        #expect(data.xorAddress(.xorPeerAddress) == otherPort)
        #expect(data.data == payload)

        _ = harness.advance(seconds: 300)
        #expect(harness.machine.receiveFromPeer(payload, peer: peer, allocation: id, now: harness.now).isNone)
        #expect(!harness.machine.hasPermission(id, peer: peer.ip, now: harness.now))
    }

    @Test func createPermissionRefusesInternalPeers() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        _ = try harness.allocate(username: user)
        for text in ["127.0.0.1", "10.1.2.3", "169.254.1.1"] {
            let address = TransportAddress(ip: try #require(IPAddress(text)), port: 80)
            let actions = harness.send(harness.request(.createPermission, username: user) { $0.append(.xorPeerAddress, xorAddress: address) })
            #expect(actions.peerRefusals.count == 1, "\(text)")
            guard case .sendToClient(let bytes, _)? = actions.first else { continue }
            #expect(try STUNMessage(decoding: bytes).errorCode?.code == 403)
        }
        let mapped = TransportAddress(ip: try #require(IPAddress("::ffff:127.0.0.1")), port: 80)
        let family = try harness.respond(harness.request(.createPermission, username: user) { $0.append(.xorPeerAddress, xorAddress: mapped) })
        #expect(family.errorCode?.code == 443)  // an IPv6 peer on an IPv4 relay
        let own = TransportAddress(ip: MachineHarness.relayIP, port: 50_002)
        let ownResponse = try harness.respond(harness.request(.createPermission, username: user) { $0.append(.xorPeerAddress, xorAddress: own) })
        #expect(ownResponse.type.messageClass == .successResponse)
        let missing = try harness.respond(harness.request(.createPermission, username: user))
        #expect(missing.errorCode?.code == 400)
    }

    @Test func channelBindRules() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        let client = MachineHarness.client()
        let (id, _) = try harness.allocate(username: user)
        func bind(_ number: UInt16, _ address: TransportAddress, _ harness: inout MachineHarness) throws -> STUNMessage {
            try harness.respond(
                harness.request(.channelBind, username: user) {
                    $0.append(.channelNumber, bytes: [UInt8(number >> 8), UInt8(number & 0xFF), 0, 0])
                    $0.append(.xorPeerAddress, xorAddress: address)
                })
        }
        #expect(try bind(0x3FFF, peer, &harness).errorCode?.code == 400)
        #expect(try bind(0x8000, peer, &harness).errorCode?.code == 400)
        #expect(try bind(0x4001, peer, &harness).type.messageClass == .successResponse)
        #expect(try bind(0x4001, peer, &harness).type.messageClass == .successResponse)  // refresh
        let other = TransportAddress(ip: .v4(IPv4Address(1, 1, 1, 1)), port: 5000)
        #expect(try bind(0x4001, other, &harness).errorCode?.code == 400)  // channel taken
        #expect(try bind(0x4002, peer, &harness).errorCode?.code == 400)  // peer has a channel
        #expect(try bind(0x4003, TransportAddress(ip: .v4(IPv4Address(10, 0, 0, 1)), port: 1), &harness).errorCode?.code == 403)

        let payload = ByteBuffer(bytes: [9, 8, 7, 6, 5])
        let channelData = ChannelData(channel: 0x4001, payload: payload).encoded(padded: false)
        guard case .sendToPeer(let sent, _, let to)? = harness.machine.relayChannelData(channelData, from: client, now: harness.now) else {
            Issue.record("ChannelData not relayed")
            return
        }
        #expect(sent == payload && to == peer)
        #expect(harness.machine.relayChannelData(ChannelData(channel: 0x4005, payload: payload).encoded(padded: false), from: client, now: harness.now).isNone)
        guard case .sendChannelDataToClient(let back, let to)? = harness.machine.receiveFromPeer(payload, peer: peer, allocation: id, now: harness.now)
        else {
            Issue.record("peer data not relayed")
            return
        }
        #expect(back.channel == 0x4001 && back.payload == payload && to == client)

        // the permission (300 s) lapses before the channel (600 s); refreshing it revives the channel
        _ = harness.advance(seconds: 300)
        #expect(harness.machine.relayChannelData(channelData, from: client, now: harness.now).isNone)
        #expect(try harness.respond(harness.request(.refresh, username: user)).type.messageClass == .successResponse)
        _ = harness.advance(seconds: 300)
        try harness.learnNonce()  // the first nonce is stale by now
        #expect(try bind(0x4001, other, &harness).type.messageClass == .successResponse)  // expired: free again
    }

    /// An allocation's permissions and channels are kept in an array up to eight and in a
    /// dictionary beyond (``SmallMap``): with twenty of each, every peer still gets through
    /// on its own channel both ways, and they expire and are pruned alike.
    @Test func manyPermissionsAndChannelsRelayEachPeer() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        let client = MachineHarness.client()
        let (id, _) = try harness.allocate(username: user)
        let peers = (1...20).map { TransportAddress(ip: .v4(IPv4Address(8, 8, 4, UInt8($0))), port: 5000 + UInt16($0)) }
        for (index, peer) in peers.enumerated() {
            let number = 0x4000 + UInt16(index)
            let bound = try harness.respond(
                harness.request(.channelBind, username: user) {
                    $0.append(.channelNumber, bytes: [UInt8(number >> 8), UInt8(number & 0xFF), 0, 0])
                    $0.append(.xorPeerAddress, xorAddress: peer)
                })
            #expect(bound.type.messageClass == .successResponse, "\(peer)")
            #expect(harness.machine.permissionAndChannelCounts == (index + 1, index + 1))
        }
        for (index, peer) in peers.enumerated() {
            let payload = ByteBuffer(bytes: [UInt8(index)])
            let number = 0x4000 + UInt16(index)
            guard case .sendToPeer(_, _, let to)? = harness.machine.relayChannelData(
                ChannelData(channel: number, payload: payload).encoded(padded: false), from: client, now: harness.now)
            else {
                Issue.record("ChannelData on \(number) not relayed")
                continue
            }
            #expect(to == peer)
            guard case .sendChannelDataToClient(let back, _)? = harness.machine.receiveFromPeer(payload, peer: peer, allocation: id, now: harness.now)
            else {
                Issue.record("data from \(peer) not relayed")
                continue
            }
            #expect(back.channel == number)
        }
        // a stranger (no permission) is not relayed, even with twenty permissions in place
        #expect(harness.machine.receiveFromPeer(ByteBuffer(bytes: [1]), peer: TransportAddress(ip: .v4(IPv4Address(9, 9, 9, 9)), port: 1), allocation: id, now: harness.now).isNone)
        #expect(try harness.respond(harness.request(.refresh, username: user)).type.messageClass == .successResponse)
        _ = harness.advance(seconds: 300)
        #expect(harness.machine.permissionAndChannelCounts == (0, 20))
        _ = harness.advance(seconds: 300)
        #expect(harness.machine.permissionAndChannelCounts == (0, 0))
    }

    @Test func channelDataOverTCPIsPadded() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        let client = MachineHarness.client(transport: .tcp)
        let (id, _) = try harness.allocate(from: client, username: user)
        _ = try harness.respond(
            harness.request(.channelBind, username: user) {
                $0.append(.channelNumber, bytes: [0x40, 0x00, 0, 0])
                $0.append(.xorPeerAddress, xorAddress: peer)
            }, from: client)
        guard case .sendChannelDataToClient(let back, let to)? = harness.machine.receiveFromPeer(ByteBuffer(bytes: [1]), peer: peer, allocation: id, now: harness.now)
        else {
            Issue.record("peer data not relayed")
            return
        }
        // the shell pads it for the stream: 4-byte header, 1 byte of data, 3 of padding
        #expect(to.transport == .tcp && back.encoded(padded: to.transport.isStream).readableBytes == 8)
    }

    @Test func evenPortReservationAndToken() throws {
        var harness = MachineHarness()
        try harness.learnNonce()
        let user = MachineHarness.username()
        let actions = harness.send(harness.request(.allocate, username: user) {
            MachineHarness.udp(&$0)
            $0.append(.evenPort, bytes: [0x80])
        })
        guard case .openRelay(let relay)? = actions.first else { throw HarnessError() }
        #expect(relay.evenPort && relay.reserveNextPort)
        let relayed = TransportAddress(ip: MachineHarness.relayIP, port: 50_010)
        let reserved = TransportAddress(ip: MachineHarness.relayIP, port: 50_011)
        let opened = harness.machine.relayOpened(relay.allocation, relayed: relayed, reserved: reserved, now: harness.now)
        guard case .sendToClient(let bytes, _)? = opened.first else { throw HarnessError() }
        let token = try #require(try STUNMessage(decoding: bytes).reservationToken)
        let second = harness.send(harness.request(.allocate, username: user) {
            MachineHarness.udp(&$0)
            $0.append(.reservationToken, bytes: (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * UInt64($0))) })
        }, from: MachineHarness.client(40_100))
        guard case .openRelay(let next)? = second.first else { throw HarnessError() }
        #expect(next.reservedAddress == reserved)

        // an unclaimed reservation is released after 30 s
        let more = harness.send(harness.request(.allocate, username: user) {
            MachineHarness.udp(&$0)
            $0.append(.evenPort, bytes: [0x80])
        }, from: MachineHarness.client(40_200))
        guard case .openRelay(let third)? = more.first else { throw HarnessError() }
        let keep = TransportAddress(ip: MachineHarness.relayIP, port: 50_021)
        _ = harness.machine.relayOpened(third.allocation, relayed: TransportAddress(ip: MachineHarness.relayIP, port: 50_020), reserved: keep, now: harness.now)
        let released = harness.advance(seconds: 30).compactMap { if case .releaseReservation(let address) = $0 { address } else { nil } }
        #expect(released == [keep])
    }

    @Test func relayFailureAnswers508() throws {
        var harness = MachineHarness { $0.allocationQuotaPerTenant = 1 }
        try harness.learnNonce()
        let actions = harness.send(harness.request(.allocate, username: MachineHarness.username(), MachineHarness.udp))
        guard case .openRelay(let relay)? = actions.first else { throw HarnessError() }
        guard case .sendToClient(let bytes, _)? = harness.machine.relayFailed(relay.allocation, now: harness.now).first else { throw HarnessError() }
        #expect(try STUNMessage(decoding: bytes).errorCode?.code == 508)
        _ = try harness.allocate()  // the failed one no longer counts against the quota
    }

    @Test func unauthenticatedAnswersAreRateLimitedPerSource() throws {
        var harness = MachineHarness()
        var answered = 0
        for _ in 0..<50 {
            let actions = harness.send(harness.request(.allocate, MachineHarness.udp))
            answered += actions.filter { if case .sendToClient = $0 { true } else { false } }.count
        }
        #expect(answered == 20)
        // another source is not affected
        let other = TURNClient(transport: .udp, local: MachineHarness.serverAddress, remote: TransportAddress(ip: .v4(IPv4Address(198, 51, 100, 2)), port: 1))
        #expect(try harness.respond(harness.request(.allocate, MachineHarness.udp), from: other).errorCode?.code == 401)
        // one second later the source gets 10 more
        harness.now = harness.now.adding(seconds: 1)
        answered = 0
        for _ in 0..<50 {
            answered += harness.send(harness.request(.binding)).filter { if case .sendToClient = $0 { true } else { false } }.count
        }
        #expect(answered == 10)
    }

    @Test func tenantEndedClosesItsAllocations() throws {
        var harness = MachineHarness()
        let (acme, _) = try harness.allocate(from: MachineHarness.client(1))
        _ = try harness.allocate(from: MachineHarness.client(2), username: MachineHarness.username(tenant: "globex"))
        #expect(harness.machine.endAllocations(tenant: "acme").closedRelays == [acme])
        #expect(harness.machine.allocationsByTenant == ["globex": 1])
    }

    @Test func unknownComprehensionRequiredAttributesGet420OnEveryRequest() throws {
        var harness = MachineHarness()
        let user = MachineHarness.username()
        _ = try harness.allocate(username: user)
        for method in [STUNMethod.refresh, .createPermission, .channelBind, .binding] {
            let response = try harness.respond(
                harness.request(method, username: method == .binding ? nil : user) { $0.append(STUNAttributeType(rawValue: 0x7FF0), bytes: [1, 2, 3, 4]) })
            #expect(response.errorCode?.code == 420, "\(method)")
            #expect(response.unknownAttributes == [STUNAttributeType(rawValue: 0x7FF0)], "\(method)")
        }
    }

    @Test func malformedRequestGets400AndIndicationsAreDropped() throws {
        var harness = MachineHarness()
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .allocate, class: .request), transactionID: .random())
        encoder.append(.lifetime, bytes: [0, 1])
        #expect(try harness.respond(encoder.message).errorCode?.code == 400)
        var indication = STUNMessageEncoder(type: STUNMessageType(method: .send, class: .indication), transactionID: .random())
        indication.append(.lifetime, bytes: [0, 1])
        #expect(harness.send(indication.message).isEmpty)
        #expect(harness.send(ByteBuffer(bytes: [0xFF, 0, 0, 0])).isEmpty)
    }

    @Test func sha256IntegrityIsAnsweredInKind() throws {
        var harness = MachineHarness()
        try harness.learnNonce()
        let user = MachineHarness.username()
        let key = MachineHarness.key(username: user)
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: .allocate, class: .request), transactionID: .random())
        encoder.append(.requestedTransport, bytes: [17, 0, 0, 0])
        encoder.append(.username, string: user)
        encoder.append(.realm, string: "switchboard")
        encoder.append(.nonce, string: harness.nonce)
        encoder.appendMessageIntegritySHA256(key: key)
        let actions = harness.send(encoder.message)
        guard case .openRelay(let relay)? = actions.first else { throw HarnessError() }
        guard case .sendToClient(let bytes, _)? = harness.machine.relayOpened(relay.allocation, relayed: TransportAddress(ip: MachineHarness.relayIP, port: 50_000), now: harness.now).first
        else { throw HarnessError() }
        let response = try STUNMessage(decoding: bytes)
        #expect(response.contains(.messageIntegritySHA256))
        #expect(response.checkIntegrity(key: key) == .valid(sha256: true))
    }
}

extension Optional where Wrapped == TURNServerMachine.Action {
    var isNone: Bool { if case .none = self { true } else { false } }
}
