import NIOCore
import STUN

/// Builds TURN requests the way a client does.
enum Requests {
    static func key(username: String, secret: String = TestSecrets.current) -> [UInt8] {
        LongTermCredentials.key(username: username, realm: "switchboard", password: TURNRESTCredentials.password(secret: secret, username: username))
    }

    static func make(
        _ method: STUNMethod, username: String? = nil, secret: String = TestSecrets.current, nonce: String = "",
        _ attributes: (inout STUNMessageEncoder) -> Void = { _ in }
    ) -> ByteBuffer {
        var encoder = STUNMessageEncoder(type: STUNMessageType(method: method, class: .request), transactionID: .random())
        attributes(&encoder)
        if let username {
            encoder.append(.username, string: username)
            encoder.append(.realm, string: "switchboard")
            encoder.append(.nonce, string: nonce)
            encoder.appendMessageIntegrity(key: key(username: username, secret: secret))
        }
        encoder.appendFingerprint()
        return encoder.message
    }

    static func udp(_ encoder: inout STUNMessageEncoder) {
        encoder.append(.requestedTransport, bytes: [17, 0, 0, 0])
    }
}
