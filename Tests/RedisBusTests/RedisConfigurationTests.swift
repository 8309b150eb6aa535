import RedisBus
import Testing

@Suite struct RedisConfigurationTests {
    @Test func plainURL() throws {
        let c = try RedisConfiguration(url: "redis://127.0.0.1:6380")
        #expect(c.host == "127.0.0.1")
        #expect(c.port == 6380)
        #expect(!c.tls)
        #expect(c.username == nil && c.password == nil)
        #expect(c.database == 0)
    }

    @Test func defaultsPortAndParsesDatabase() throws {
        let c = try RedisConfiguration(url: "redis://redis.internal/3")
        #expect(c.host == "redis.internal")
        #expect(c.port == 6379)
        #expect(c.database == 3)
    }

    @Test func passwordOnlyAndACLUser() throws {
        let a = try RedisConfiguration(url: "redis://:s3cret@h:1")
        #expect(a.username == nil)
        #expect(a.password == "s3cret")
        let b = try RedisConfiguration(url: "rediss://alice:p%40ss%2Fw0rd@h:2/5")
        #expect(b.tls)
        #expect(b.username == "alice")
        #expect(b.password == "p@ss/w0rd")
        #expect(b.database == 5)
        // an unencoded '@', '/' or '?' in the password still parses
        let c = try RedisConfiguration(url: "redis://:a@b/c?d@h:7")
        #expect(c.password == "a@b/c?d")
        #expect(c.host == "h" && c.port == 7)
    }

    @Test func ipv6AndQueryOptions() throws {
        let c = try RedisConfiguration(url: "rediss://[::1]:6390/2?ca=/tmp/ca.crt&name=node-a&connect_timeout=1.5&command_timeout=0.25&tls_server_name=redis.test")
        #expect(c.host == "::1")
        #expect(c.port == 6390)
        #expect(c.caFile == "/tmp/ca.crt")
        #expect(c.clientName == "node-a")
        #expect(c.connectTimeout == .milliseconds(1500))
        #expect(c.commandTimeout == .milliseconds(250))
        #expect(c.tlsServerName == "redis.test")
        #expect(c.description == "rediss://[::1]:6390/2")
    }

    @Test(arguments: [
        ("http://h", "must start with redis:// or rediss://"),
        ("redis://", "has no host"),
        ("redis://h:0", "port must be a number from 1 to 65535"),
        ("redis://h:99999", "port must be a number from 1 to 65535"),
        ("redis://h:abc", "port must be a number"),
        ("redis://h/x", "must be a database number"),
        ("redis://h?bogus=1", "unknown option 'bogus'"),
        ("redis://h?connect_timeout=-1", "connect_timeout must be a positive number"),
        ("redis://[::1", "unclosed '['"),
        ("redis://:%zz@h", "password has a bad percent-escape"),
    ])
    func clearErrors(_ url: String, _ expected: String) {
        do {
            _ = try RedisConfiguration(url: url)
            Issue.record("\(url) parsed")
        } catch {
            #expect(error.code == .invalidURL)
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test func neverShowsThePassword() throws {
        let c = try RedisConfiguration(url: "redis://bob:hunter2@h:1/4")
        #expect(c.description == "redis://bob:***@h:1/4")
        #expect(!"\(c)".contains("hunter2"))
        // errors after the credentials never repeat them
        for url in ["redis://:hunter2@h:x", "redis://:hunter2@h/x", "redis://:hunter2@h?x=1", "redis://:hunter2@"] {
            do {
                _ = try RedisConfiguration(url: url)
                Issue.record("\(url) parsed")
            } catch {
                #expect(!error.description.contains("hunter2"), "\(error)")
            }
        }
    }

    @Test func backoffGrowsCapsAndJitters() {
        let backoff = RedisClient.Backoff(initial: .milliseconds(100), maximum: .seconds(2), jitter: 0.5)
        #expect(backoff.delay(attempt: 0, random: 0) == .milliseconds(100))
        #expect(backoff.delay(attempt: 3, random: 0) == .milliseconds(800))
        #expect(backoff.delay(attempt: 10, random: 0) == .seconds(2))
        #expect(backoff.delay(attempt: 10, random: 1) == .seconds(1))
        #expect(backoff.delay(attempt: 1000, random: 0.5) == .milliseconds(1500))
    }
}
