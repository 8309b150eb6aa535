import Logging
import Metrics
import NIOCore
import NIOEmbedded
import NIOPosix
import STUN
import Testing

@testable import TURNServer

/// A UDP channel can close without the core closing it — NIO closes a datagram channel on a
/// read error it deems fatal. Its descriptor is then gone, and its number may be handed to the
/// next socket anyone opens: nothing may drain or send on it again.
@Suite struct ChannelLifecycleTests {
    private func makeCore(loop: any EventLoop) -> TURNCore {
        TURNCore(
            configuration: testTURNConfiguration(relayPorts: 61000...61999), publicIP: IPAddress("127.0.0.1") ?? .v4(IPv4Address(0)),
            loop: loop, logger: Logger(label: "lifecycle-test"), metricsFactory: NOOPMetricsHandler.instance,
            shared: TURNNodeShared(loops: 1, metricsFactory: NOOPMetricsHandler.instance), index: 0)
    }

    @Test func aRelayChannelThatClosesForgetsItsDescriptor() throws {
        let loop = EmbeddedEventLoop()
        let handler = RelayHandler(core: makeCore(loop: loop))
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        handler.descriptor = 42
        _ = try channel.finish(acceptAlreadyClosed: false)
        #expect(handler.descriptor == -1)
    }

    @Test func aListenerThatClosesIsForgottenAndReportedNotListening() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let core = makeCore(loop: loop)
        _ = try await loop.flatSubmit { core.start(port: 0, tlsPort: 0, reusePort: false) }.get()
        let listener = try #require(try await loop.submit { core.listenerChannel }.get())
        #expect(try await loop.submit { core.status.isListening }.get())
        try await listener.close()  // as NIO would, not through the core
        #expect(try await loop.submit { core.status.isListening }.get() == false)
        #expect(try await loop.submit { core.listenerChannel == nil }.get())
        try await loop.flatSubmit { core.shutdown() }.get()
    }
}
