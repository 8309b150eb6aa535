import Foundation
import Histogram
import NIOCore
import NIOPosix
import Signaling
import SwitchboardClient
import SwitchboardServer
import Synchronization

/// Drives one benchmark: connects the sessions, paces the traffic on each event loop, and
/// collects latency (an HDR histogram per loop, merged at the end), errors and losses.
struct BenchRunner {
    let plan: BenchPlan
    let log: @Sendable (String) -> Void

    func run() async throws -> BenchReport {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: plan.threads)
        do {
            let report = try await run(on: group)
            try? await group.shutdownGracefully()
            return report
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func run(on group: MultiThreadedEventLoopGroup) async throws -> BenchReport {
        let loops = group.makeIterator().map { BenchLoop(eventLoop: $0, payloadSize: plan.size) }
        let rssBefore = ProcessMemory.rssKB(plan.serverPIDs)

        // Connect: session i sits on loop i % loops, node i % urls; its partner is i ^ 1.
        let started = ContinuousClock.now
        log("connecting \(plan.sessions) sessions to \(plan.urls.joined(separator: ", "))…")
        let peers = (0..<plan.sessions).map { index in
            BenchPeer(index: index, partner: index ^ 1, loop: loops[index % loops.count])
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            var next = 0
            func add() {
                let peer = peers[next]
                let url = plan.webSocketBase((next / 2) + (next % 2))
                let room = "bench-room-\((next / 2) % plan.rooms)"
                tasks.addTask {
                    let claims = AccessClaims(
                        issuer: plan.apiKey, subject: "peer-\(peer.index)", room: room,
                        expiresAt: Date().addingTimeInterval(plan.duration + plan.warmup + 3600))
                    let token = try await AccessTokens.mint(claims, apiKey: plan.apiKey, secret: plan.apiSecret)
                    try await peer.connect(url: "\(url)/v1/signal?access_token=\(token)")
                }
                next += 1
            }
            while next < min(plan.connectConcurrency, peers.count) { add() }
            while try await tasks.next() != nil {
                if next < peers.count { add() }
            }
        }
        // Every session has its welcome before traffic starts.
        while loops.map(\.welcomed).reduce(0, +) < plan.sessions {
            try await Task.sleep(for: .milliseconds(10))
        }
        let connectSeconds = (ContinuousClock.now - started).seconds
        log(String(format: "connected in %.2f s", connectSeconds))

        var rssPerSession: Double?
        var rssAfter: Int?
        if !plan.serverPIDs.isEmpty {
            try await Task.sleep(for: .seconds(2))
            rssAfter = ProcessMemory.rssKB(plan.serverPIDs)
            if let before = rssBefore, let after = rssAfter {
                rssPerSession = Double(after - before) / Double(plan.sessions)
            }
        }

        var measured = 0.0
        var serverCPU: Double?
        if plan.rate > 0 {
            for loop in loops { loop.setPartners(peers) }
            let perLoop = Double(plan.rate) / Double(loops.count)
            if plan.warmup > 0 {
                log("warming up for \(plan.warmup) s…")
                for loop in loops { loop.startSending(ratePerSecond: perLoop) }
                try await Task.sleep(for: .milliseconds(Int64(plan.warmup * 1000)))
                for loop in loops { loop.stopSending() }
                try await Task.sleep(for: .milliseconds(500))
                for loop in loops { loop.resetStats() }
            }
            log("sending \(plan.rate) messages/s of \(plan.size) bytes for \(plan.duration) s…")
            let measureStart = ContinuousClock.now
            let cpuBefore = ProcessMemory.cpuSeconds(plan.serverPIDs)
            for loop in loops { loop.startSending(ratePerSecond: perLoop) }
            try await Task.sleep(for: .milliseconds(Int64(plan.duration * 1000)))
            for loop in loops { loop.stopSending() }
            measured = (ContinuousClock.now - measureStart).seconds
            // Let in-flight messages land.
            let settle = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < settle {
                let stats = await BenchLoop.collect(loops)
                if stats.received >= stats.sent { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            if let before = cpuBefore, let after = ProcessMemory.cpuSeconds(plan.serverPIDs) { serverCPU = after - before }
        } else {
            log("holding \(plan.sessions) idle sessions for \(plan.duration) s…")
            try await Task.sleep(for: .milliseconds(Int64(plan.duration * 1000)))
        }
        let stats = await BenchLoop.collect(loops)
        for peer in peers { peer.close() }
        try await Task.sleep(for: .milliseconds(200))
        return BenchReport(
            plan: plan, connectSeconds: connectSeconds, measuredSeconds: measured, stats: stats,
            serverRSSBeforeKB: rssBefore, serverRSSAfterKB: rssAfter, serverRSSPerSessionKB: rssPerSession, serverCPUSeconds: serverCPU)
    }
}

/// What the loops measured, merged.
struct BenchStats: Sendable {
    var sent = 0
    var received = 0
    var errors = 0
    var outOfOrder = 0
    var closed = 0
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
}

/// One session of the generator.
final class BenchPeer: Sendable {
    let index: Int
    let partner: Int
    let loop: BenchLoop
    private let connection = Mutex<LeanConnection?>(nil)

    init(index: Int, partner: Int, loop: BenchLoop) {
        self.index = index
        self.partner = partner
        self.loop = loop
    }

    func connect(url: String) async throws {
        let loop = self.loop
        let index = self.index
        let connection = try await LeanConnection.connect(
            url: url, on: loop.eventLoop,
            onFrame: { frame in loop.received(frame, by: index) },
            onClose: { _ in loop.closed() })
        self.connection.withLock { $0 = connection }
        loop.register(index: index, connection: connection)
    }

    func close() {
        connection.withLock { $0 }?.close()
    }
}

/// The sessions of one event loop and their statistics. Everything here runs on that loop
/// (the handlers' callbacks and the pacing timer), so it needs no locks.
final class BenchLoop: @unchecked Sendable {
    let eventLoop: any EventLoop
    private let payloadSize: Int
    private var connections: [Int: LeanConnection] = [:]
    private var senders: [(index: Int, partner: String, connection: LeanConnection)] = []
    private var partnerIDs: [Int: String] = [:]
    private var nextSender = 0
    private var counters: [Int: UInt64] = [:]
    private var lastSeen: [Int: UInt64] = [:]
    private var stats = BenchStats()
    private var pacing: RepeatedTask?
    private var pacingStart = NIODeadline.now()
    private var pacedSent = 0
    private let welcomedCount = Atomic<Int>(0)

    init(eventLoop: any EventLoop, payloadSize: Int) {
        self.eventLoop = eventLoop
        self.payloadSize = payloadSize
    }

    var welcomed: Int { welcomedCount.load(ordering: .relaxed) }

    func register(index: Int, connection: LeanConnection) {
        eventLoop.execute { self.connections[index] = connection }
    }

    func setPartners(_ peers: [BenchPeer]) {
        eventLoop.execute {
            self.senders = self.connections.keys.sorted().compactMap { index in
                guard let connection = self.connections[index] else { return nil }
                return (index, "peer-\(peers[index].partner)", connection)
            }
        }
    }

    func startSending(ratePerSecond: Double) {
        eventLoop.execute {
            self.pacingStart = .now()
            self.pacedSent = 0
            self.pacing = self.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { _ in
                self.tick(ratePerSecond: ratePerSecond)
            }
        }
    }

    func stopSending() {
        eventLoop.execute {
            self.pacing?.cancel()
            self.pacing = nil
        }
    }

    func resetStats() {
        eventLoop.execute { self.stats = BenchStats() }
    }

    /// Sends what the pace says is due by now, round-robin over this loop's sessions.
    private func tick(ratePerSecond: Double) {
        guard !senders.isEmpty else { return }
        let elapsed = Double((NIODeadline.now() - pacingStart).nanoseconds) / 1e9
        let due = Int(elapsed * ratePerSecond) - pacedSent
        guard due > 0 else { return }
        var touched: [ObjectIdentifier: LeanConnection] = [:]
        for _ in 0..<due {
            let sender = senders[nextSender]
            nextSender = (nextSender + 1) % senders.count
            let counter = (counters[sender.index] ?? 0) + 1
            counters[sender.index] = counter
            sender.connection.sendOnLoop(frame(from: sender.index, to: sender.partner, counter: counter), flush: false)
            touched[ObjectIdentifier(sender.connection)] = sender.connection
        }
        for connection in touched.values { connection.flush() }
        pacedSent += due
        stats.sent += due
    }

    /// `{"type":"signal","to":…,"data":{"t":nanos,"s":sender,"n":counter,"p":"xxx…"}}` with
    /// `data` exactly `payloadSize` bytes.
    private func frame(from sender: Int, to partner: String, counter: UInt64) -> [UInt8] {
        let head = "{\"t\":\(NIODeadline.now().uptimeNanoseconds),\"s\":\(sender),\"n\":\(counter),\"p\":\""
        let padding = max(0, payloadSize - head.utf8.count - 2)
        var bytes = Array("{\"type\":\"signal\",\"to\":\"\(partner)\",\"data\":".utf8)
        bytes.reserveCapacity(bytes.count + payloadSize + 2)
        bytes.append(contentsOf: head.utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "x"), count: padding))
        bytes.append(contentsOf: "\"}}".utf8)
        return bytes
    }

    func received(_ frame: ByteBuffer, by receiver: Int) {
        let now = NIODeadline.now().uptimeNanoseconds
        let event = frame.withUnsafeReadableBytes { bytes in try? ServerEvent.decode(bytes) }
        switch event {
        case .welcome:
            welcomedCount.add(1, ordering: .relaxed)
        case .relay(_, _, let data, _):
            guard let (sentAt, sender, counter) = Self.parsePayload(data) else { return }
            stats.received += 1
            if now > sentAt { _ = stats.latency.record(now - sentAt) }
            let previous = lastSeen[sender] ?? 0
            if counter != previous + 1, previous != 0 { stats.outOfOrder += 1 }
            lastSeen[sender] = counter
        case .error:
            stats.errors += 1
        default:
            break
        }
    }

    func closed() {
        stats.closed += 1
    }

    static func parsePayload(_ data: RawJSON) -> (UInt64, Int, UInt64)? {
        var time: UInt64?
        var sender: Int?
        var counter: UInt64?
        data.bytes.withUnsafeBytes { bytes in
            try? JSONScanner.scanObject(bytes) { key, value in
                guard value.kind == .number else { return }
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[value.range]), as: UTF8.self)
                switch String(decoding: UnsafeRawBufferPointer(rebasing: bytes[key]), as: UTF8.self) {
                case "t": time = UInt64(text)
                case "s": sender = Int(text)
                case "n": counter = UInt64(text)
                default: break
                }
            }
        }
        guard let time, let sender, let counter else { return nil }
        return (time, sender, counter)
    }

    /// Merges every loop's statistics (each read on its own loop).
    static func collect(_ loops: [BenchLoop]) async -> BenchStats {
        var total = BenchStats()
        for loop in loops {
            let stats = try? await loop.eventLoop.submit { loop.stats }.get()
            guard let stats else { continue }
            total.sent += stats.sent
            total.received += stats.received
            total.errors += stats.errors
            total.outOfOrder += stats.outOfOrder
            total.closed += stats.closed
            total.latency.add(stats.latency)
        }
        return total
    }
}

enum ProcessMemory {
    /// Resident set size of local processes together, from /proc (nil when none is given or
    /// one cannot be read).
    static func rssKB(_ pids: [Int32]) -> Int? {
        guard !pids.isEmpty else { return nil }
        var total = 0
        for pid in pids {
            guard let rss = rssKB(pid) else { return nil }
            total += rss
        }
        return total
    }

    /// CPU time (user + system) local processes have used so far, in seconds, from
    /// `/proc/PID/stat` (clock ticks of 1/100 s).
    static func cpuSeconds(_ pids: [Int32]) -> Double? {
        guard !pids.isEmpty else { return nil }
        var ticks = 0
        for pid in pids {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // Fields after the command name: state is field 3; utime and stime are 14 and 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
            ticks += user + system
        }
        return Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Resident set size of a local process, from /proc.
    static func rssKB(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "")
        }
        return nil
    }
}
