import STUN
import Testing

@Suite struct PeerAddressPolicyTests {
    static let relay = IPAddress("203.0.113.7")!
    static let policy = PeerAddressPolicy(allowLoopback: false, ownAddresses: [relay])

    static let refusedTable: [(String, PeerAddressPolicy.Refusal)] = [
        ("127.0.0.1", .loopback),
        ("127.255.0.9", .loopback),
        ("10.1.2.3", .private),
        ("172.16.0.1", .private),
        ("172.31.255.255", .private),
        ("192.168.1.1", .private),
        ("100.64.0.1", .private),
        ("100.127.255.254", .private),
        ("169.254.1.1", .linkLocal),
        ("169.254.169.254", .linkLocal),
        ("0.0.0.0", .unspecified),
        ("0.1.2.3", .unspecified),
        ("224.0.0.1", .multicast),
        ("239.255.255.250", .multicast),
        ("255.255.255.255", .broadcast),
        ("240.0.0.1", .reserved),
        ("::", .unspecified),
        ("::1", .loopback),
        ("::ffff:127.0.0.1", .loopback),
        ("::ffff:10.0.0.1", .private),
        ("::ffff:0:127.0.0.1", .loopback),
        ("::127.0.0.1", .loopback),
        ("::10.0.0.1", .private),
        ("64:ff9b::7f00:1", .loopback),
        ("64:ff9b::a9fe:a9fe", .linkLocal),
        ("64:ff9b:1::1", .private),
        ("2002:7f00:1::", .loopback),
        ("2002:c0a8:101::1", .private),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", .loopback),  // Teredo client 127.0.0.1
        ("fc00::1", .private),
        ("fd12:3456::1", .private),
        ("fe80::1", .linkLocal),
        ("ff02::1", .multicast),
    ]

    @Test(arguments: refusedTable) func refused(_ text: String, _ reason: PeerAddressPolicy.Refusal) throws {
        let address = try #require(IPAddress(text))
        #expect(Self.policy.refusal(for: address) == reason, "\(text)")
    }

    @Test(arguments: ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])
    func allowed(_ text: String) throws {
        #expect(Self.policy.permits(try #require(IPAddress(text))), "\(text)")
    }

    @Test func ownRelayAddressIsAllowedEvenWhenPrivate() throws {
        let own = try #require(IPAddress("10.0.0.5"))
        let policy = PeerAddressPolicy(ownAddresses: [own, Self.relay])
        #expect(policy.permits(own))
        #expect(policy.permits(Self.relay))
        #expect(policy.permits(try #require(IPAddress("::ffff:10.0.0.5"))))
        #expect(!policy.permits(try #require(IPAddress("10.0.0.6"))))
    }

    @Test func loopbackSwitchAllowsLoopbackOnly() throws {
        let policy = PeerAddressPolicy(allowLoopback: true)
        #expect(policy.permits(try #require(IPAddress("127.0.0.1"))))
        #expect(policy.permits(try #require(IPAddress("::1"))))
        #expect(policy.permits(try #require(IPAddress("::ffff:127.0.0.1"))))
        #expect(!policy.permits(try #require(IPAddress("10.1.2.3"))))
        #expect(!policy.permits(try #require(IPAddress("169.254.1.1"))))
    }
}

@Suite struct PeerTransportAddressPolicyTests {
    @Test func ownAddressesAreOpenOnRelayPortsOnly() throws {
        let own = try #require(IPAddress("203.0.113.7"))
        let policy = PeerAddressPolicy(ownAddresses: [own], ownPorts: 49152...65535)
        #expect(policy.permits(TransportAddress(ip: own, port: 50_000)))
        #expect(!policy.permits(TransportAddress(ip: own, port: 9090)))
        #expect(!policy.permits(TransportAddress(ip: try #require(IPAddress("::ffff:203.0.113.7")), port: 9090)))
        #expect(policy.permits(TransportAddress(ip: try #require(IPAddress("8.8.8.8")), port: 53)))
        #expect(!policy.permits(TransportAddress(ip: try #require(IPAddress("10.0.0.1")), port: 50_000)))
    }
}
