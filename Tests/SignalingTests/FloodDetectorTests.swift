import Signaling
import Testing

@Suite struct FloodDetectorTests {
    let ms: UInt64 = 1_000_000

    @Test func aBurstOfRefusalsIsShort() {
        var detector = FloodDetector()
        var longest: Int64 = 0
        // 250 frames at once, refused within 5 ms.
        for i in 0..<150 { longest = max(longest, detector.refused(at: 10_000 * ms + UInt64(i) * 30_000)) }
        #expect(longest < Int64(10 * ms))
    }

    @Test func refusalsWithoutAQuietSecondAddUp() {
        var detector = FloodDetector()
        var last: Int64 = 0
        // A client sending 60/s against a 50/s limit: a refusal every 100 ms for 6 s.
        for step in 0...60 { last = detector.refused(at: UInt64(step) * 100 * ms) }
        #expect(last == Int64(6_000 * ms))
    }

    @Test func aQuietSecondStartsAFreshCount() {
        var detector = FloodDetector()
        _ = detector.refused(at: 0)
        _ = detector.refused(at: 900 * ms)
        #expect(detector.refused(at: 1_800 * ms) == Int64(1_800 * ms))
        // 1.2 s of quiet: a new burst, not the same flood.
        #expect(detector.refused(at: 3_000 * ms) == 0)
        #expect(detector.refused(at: 3_500 * ms) == Int64(500 * ms))
    }
}
