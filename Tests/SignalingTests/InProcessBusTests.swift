import Testing

@testable import Signaling

@Suite struct InProcessBusTests {
    @Test func deliversToTheTopicsSubscribersOnly() async {
        let bus = InProcessBus()
        let nodeA = BusInbox()
        let nodeB = BusInbox()
        let control = BusInbox()
        let subscriptions = [
            bus.subscribe(.node("a")) { nodeA.append($0) },
            bus.subscribe(.node("b")) { nodeB.append($0) },
            bus.subscribe(.control) { control.append($0) },
        ]
        defer { subscriptions.forEach { $0.cancel() } }
        #expect(bus.publish(.kick(tenantID: "acme", room: "r", peerId: "p"), to: .node("a")))
        #expect(bus.publish(.tenantChanged(tenantID: "acme"), to: .control))
        #expect(nodeA.all == [.kick(tenantID: "acme", room: "r", peerId: "p")])
        #expect(nodeB.all.isEmpty)
        #expect(control.all == [.tenantChanged(tenantID: "acme")])
        #expect(await bus.isAvailable())
    }

    @Test func everySubscriberOfATopicHearsIt() {
        let bus = InProcessBus()
        let first = BusInbox()
        let second = BusInbox()
        let a = bus.subscribe(.control) { first.append($0) }
        let b = bus.subscribe(.control) { second.append($0) }
        bus.publish(.roomClosed(tenantID: "acme", room: "r"), to: .control)
        #expect(first.all.count == 1)
        #expect(second.all.count == 1)
        a.cancel()
        bus.publish(.roomClosed(tenantID: "acme", room: "r2"), to: .control)
        #expect(first.all.count == 1)
        #expect(second.all.count == 2)
        b.cancel()
    }

    @Test func publishingWithNoSubscriberStillSucceeds() {
        #expect(InProcessBus().publish(.tenantChanged(tenantID: "acme"), to: .node("nobody")))
    }
}
