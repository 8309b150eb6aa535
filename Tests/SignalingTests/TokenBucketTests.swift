import Testing

@testable import Signaling

@Suite struct TokenBucketTests {
    static let second: UInt64 = 1_000_000_000
    static let start: UInt64 = 5 * second

    /// Takes tokens at `now` until refused; returns how many were granted.
    static func drain(_ bucket: inout TokenBucket, now: UInt64) -> Int {
        var granted = 0
        while bucket.take(now: now) {
            granted += 1
            if granted > 10_000 { break }
        }
        return granted
    }

    /// The answers of successive `take` calls at the given times.
    static func takes(_ bucket: inout TokenBucket, at times: [UInt64]) -> [Bool] {
        times.map { bucket.take(now: $0) }
    }

    @Test func grantsTheBurstThenRefuses() {
        var bucket = TokenBucket(rate: 50, burst: 100, now: Self.start)
        let granted = Self.drain(&bucket, now: Self.start)
        #expect(granted == 100)
    }

    @Test func refillsAtTheRate() {
        var bucket = TokenBucket(rate: 2, burst: 3, now: Self.start)
        let burst = Self.drain(&bucket, now: Self.start)
        #expect(burst == 3)
        var early = bucket
        let beforeHalfSecond = Self.takes(&early, at: [Self.start + Self.second / 2 - 1_000_000])  // 0.998 tokens
        #expect(beforeHalfSecond == [false])
        var onTime = bucket
        let atHalfSecond = Self.takes(&onTime, at: [Self.start + Self.second / 2, Self.start + Self.second / 2])  // exactly 1 token
        #expect(atHalfSecond == [true, false])
        var later = bucket
        let afterOneSecond = Self.drain(&later, now: Self.start + Self.second)  // 2 tokens a second
        #expect(afterOneSecond == 2)
    }

    @Test func refillIsCappedAtTheBurst() {
        var bucket = TokenBucket(rate: 50, burst: 100, now: Self.start)
        _ = Self.drain(&bucket, now: Self.start)
        let afterAnHour = Self.drain(&bucket, now: Self.start + 3600 * Self.second)
        #expect(afterAnHour == 100)
    }

    @Test func sustainedRateIsHonoured() {
        var bucket = TokenBucket(rate: 50, burst: 100, now: Self.start)
        _ = Self.drain(&bucket, now: Self.start)
        // One frame every 20 ms is exactly the rate: all granted.
        let steady = Self.takes(&bucket, at: (1...200).map { Self.start + UInt64($0) * 20_000_000 })
        #expect(steady.allSatisfy { $0 })
        // A second frame in the same instant is not.
        let extra = Self.takes(&bucket, at: [Self.start + 200 * 20_000_000])
        #expect(extra == [false])
    }

    @Test func timeGoingBackwardsGrantsNothing() {
        var bucket = TokenBucket(rate: 10, burst: 1, now: Self.start)
        let answers = Self.takes(&bucket, at: [Self.start, Self.start - Self.second, Self.start, Self.start + Self.second / 10])
        #expect(answers == [true, false, false, true])
    }

    @Test func nonPositiveSettingsAreClampedToOne() {
        var bucket = TokenBucket(rate: 0, burst: 0, now: Self.start)
        #expect(bucket.rate == 1)
        #expect(bucket.burst == 1)
        let answers = Self.takes(&bucket, at: [Self.start, Self.start, Self.start + Self.second])
        #expect(answers == [true, false, true])
    }
}
