import CHiredis
import NIOCore

/// Formats commands as RESP with hiredis's `redisFormatCommandArgv` (the argv form; the
/// variadic `redisCommand` family is never used).
enum RESPCommandEncoder {
    /// Appends `args` as one RESP command to `buffer`.
    static func encode(_ args: [RedisArgument], into buffer: inout ByteBuffer) throws(RedisError) {
        guard !args.isEmpty else { throw RedisError(.invalidCommand, "empty command") }
        guard args.count <= Int(Int32.max) else { throw RedisError(.invalidCommand, "too many arguments") }
        // All arguments in one contiguous block, so one pointer table can address them.
        var storage: [UInt8] = []
        storage.reserveCapacity(args.reduce(1) { $0 + $1.bytes.count })
        var lengths: [Int] = []
        lengths.reserveCapacity(args.count)
        for arg in args {
            storage.append(contentsOf: arg.bytes)
            lengths.append(arg.bytes.count)
        }
        storage.append(0)  // never empty, so the base address is never nil
        let formatted: Int32 = storage.withUnsafeBufferPointer { block in
            guard let base = block.baseAddress else { return -1 }
            return base.withMemoryRebound(to: CChar.self, capacity: block.count) { chars in
                var pointers: [UnsafePointer<CChar>?] = []
                pointers.reserveCapacity(args.count)
                var offset = 0
                for length in lengths {
                    pointers.append(chars + offset)
                    offset += length
                }
                var target: UnsafeMutablePointer<CChar>?
                let count = pointers.withUnsafeMutableBufferPointer { argv in
                    lengths.withUnsafeBufferPointer { argvlen in
                        redisFormatCommandArgv(&target, Int32(args.count), argv.baseAddress, argvlen.baseAddress)
                    }
                }
                guard count >= 0, let target else { return -1 }
                defer { redisFreeCommand(target) }
                buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(count)))
                return count
            }
        }
        guard formatted >= 0 else { throw RedisError(.invalidCommand, "hiredis could not format the command") }
    }
}
