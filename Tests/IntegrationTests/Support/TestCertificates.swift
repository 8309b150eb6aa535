import Foundation

/// Certificates for TLS tests.
enum TestCertificates {
    /// A self-signed CA (EC P-256, valid until 2126) that signed nothing: trusting only it
    /// must fail against any server. Its key was thrown away.
    static let unrelatedCA = """
        -----BEGIN CERTIFICATE-----
        MIIBtzCCAV2gAwIBAgIUbfhhwhb9b2NNVb02bHZUawklk1QwCgYIKoZIzj0EAwIw
        KDEmMCQGA1UEAwwdc3dpdGNoYm9hcmQgdW5yZWxhdGVkIHRlc3QgQ0EwIBcNMjYx
        MTI1MDU0MTUwWhgPMjEyNjExMDEwNTQxNTBaMCgxJjAkBgNVBAMMHXN3aXRjaGJv
        YXJkIHVucmVsYXRlZCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
        /8repgOziG0b+WOahUxx3Sbj6sS5Xn28BFTBzqrLzlhiD7cas/GerQQhUmAFML1h
        YNq/tvwU/1HotOLcnBRe+qNjMGEwHQYDVR0OBBYEFFWUXifzPnx6Gh9NZixujU88
        z2EGMB8GA1UdIwQYMBaAFFWUXifzPnx6Gh9NZixujU88z2EGMA8GA1UdEwEB/wQF
        MAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0gAMEUCIHVTyyrK+cpY
        p0x04OMw3DupyamGo0Iz6B3DskDI5yYwAiEAg7bc/BHZzRJnlWSLPq/pF+bvIt0N
        ErKKg7h7EBuexss=
        -----END CERTIFICATE-----

        """

    /// A fresh temporary directory for `body`, removed afterwards.
    static func withDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try await body(directory)
    }

    /// Writes `contents` to `name` in `directory`; returns the path.
    static func write(_ contents: String, _ name: String, in directory: URL) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(contents.utf8).write(to: url)
        return url.path
    }
}
