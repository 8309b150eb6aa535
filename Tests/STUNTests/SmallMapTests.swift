import Testing

@testable import STUN

@Suite struct SmallMapTests {
    /// Random sets, removals and bulk removals, across the switch from array to dictionary,
    /// checked step by step against a Dictionary.
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func behavesLikeADictionary(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var map = SmallMap<UInt16, Int>()
        var model: [UInt16: Int] = [:]
        let keys = UInt16(seed * 5)  // a key range per seed: 5 to 20 keys, on both sides of the limit
        for step in 0..<2_000 {
            let key = UInt16.random(in: 0...keys, using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                map[key] = step
                model[key] = step
            case 6..<9:
                map[key] = nil
                model[key] = nil
            default:
                let cut = Int.random(in: 0...step, using: &random)
                map.removeAll { $1 < cut }
                model = model.filter { $0.value >= cut }
            }
            #expect(map.count == model.count)
            for probe in 0...keys + 1 where map[probe] != model[probe] {
                Issue.record("step \(step): key \(probe) is \(String(describing: map[probe])), expected \(String(describing: model[probe]))")
                return
            }
            #expect(map.contains { $1 == step } == model.values.contains(step))
            #expect(Dictionary(uniqueKeysWithValues: map.pairs.map { ($0.key, $0.value) }) == model)
        }
    }
}
