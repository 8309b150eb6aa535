/// A STUN method (12 bits): Binding, and the TURN methods of RFC 8656 and RFC 6062.
public struct STUNMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x0FFF }

    public static let binding = STUNMethod(rawValue: 0x001)
    public static let allocate = STUNMethod(rawValue: 0x003)
    public static let refresh = STUNMethod(rawValue: 0x004)
    public static let send = STUNMethod(rawValue: 0x006)
    public static let data = STUNMethod(rawValue: 0x007)
    public static let createPermission = STUNMethod(rawValue: 0x008)
    public static let channelBind = STUNMethod(rawValue: 0x009)
    public static let connect = STUNMethod(rawValue: 0x00A)
    public static let connectionBind = STUNMethod(rawValue: 0x00B)
    public static let connectionAttempt = STUNMethod(rawValue: 0x00C)

    public var description: String {
        switch self {
        case .binding: "Binding"
        case .allocate: "Allocate"
        case .refresh: "Refresh"
        case .send: "Send"
        case .data: "Data"
        case .createPermission: "CreatePermission"
        case .channelBind: "ChannelBind"
        case .connect: "Connect"
        case .connectionBind: "ConnectionBind"
        case .connectionAttempt: "ConnectionAttempt"
        default: "method 0x\(String(rawValue, radix: 16))"
        }
    }
}

/// The class of a STUN message.
public enum STUNClass: UInt8, Sendable, Hashable {
    case request = 0b00
    case indication = 0b01
    case successResponse = 0b10
    case errorResponse = 0b11
}

/// The 14-bit message type: a method and a class interleaved as RFC 8489 §5 draws them.
public struct STUNMessageType: Hashable, Sendable, CustomStringConvertible {
    public var method: STUNMethod
    public var messageClass: STUNClass

    public init(method: STUNMethod, class messageClass: STUNClass) {
        self.method = method
        self.messageClass = messageClass
    }

    /// Decodes the 16-bit type field; the two top bits must be zero (checked by the caller).
    public init(rawValue: UInt16) {
        let m = rawValue & 0x000F | (rawValue & 0x00E0) >> 1 | (rawValue & 0x3E00) >> 2
        let c = (rawValue & 0x0010) >> 4 | (rawValue & 0x0100) >> 7
        self.method = STUNMethod(rawValue: m)
        self.messageClass = STUNClass(rawValue: UInt8(c)) ?? .request
    }

    public var rawValue: UInt16 {
        let m = method.rawValue
        let c = UInt16(messageClass.rawValue)
        return m & 0x000F | (m & 0x0070) << 1 | (m & 0x0F80) << 2 | (c & 0b01) << 4 | (c & 0b10) << 7
    }

    /// The success response type for a request of this method.
    public var success: STUNMessageType { STUNMessageType(method: method, class: .successResponse) }
    /// The error response type for a request of this method.
    public var error: STUNMessageType { STUNMessageType(method: method, class: .errorResponse) }

    public var description: String {
        switch messageClass {
        case .request: "\(method) request"
        case .indication: "\(method) indication"
        case .successResponse: "\(method) success response"
        case .errorResponse: "\(method) error response"
        }
    }
}

/// The 96-bit transaction id.
public struct TransactionID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt32
    public var low: UInt64

    public init(high: UInt32, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Twelve bytes, as they travel.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 12 else { return nil }
        var high: UInt32 = 0
        var low: UInt64 = 0
        for index in 0..<4 { high = high << 8 | UInt32(bytes[index]) }
        for index in 4..<12 { low = low << 8 | UInt64(bytes[index]) }
        self.init(high: high, low: low)
    }

    /// A fresh random transaction id.
    public static func random() -> TransactionID {
        var generator = SystemRandomNumberGenerator()
        return TransactionID(high: generator.next(), low: generator.next())
    }

    /// The twelve bytes, as they travel.
    public var bytes: [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: high >> (24 - 8 * UInt32($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64($0))) }
    }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
