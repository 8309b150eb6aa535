import NIOCore

extension ByteBuffer {
    /// Bytes written as hex digits, whitespace ignored (RFC test vectors).
    init(hex: String) {
        let digits = hex.unicodeScalars.filter { !$0.properties.isWhitespace }.map { Character($0) }
        var bytes: [UInt8] = []
        var index = 0
        while index + 1 < digits.count {
            bytes.append(UInt8(String(digits[index...index + 1]), radix: 16) ?? 0)
            index += 2
        }
        self.init(bytes: bytes)
    }

    var hexString: String { readableBytesView.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
}
