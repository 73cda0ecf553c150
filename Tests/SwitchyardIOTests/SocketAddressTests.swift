import Testing
import SwitchyardIO

@Suite struct SocketAddressTests {
    @Test func loopbackAddressesAreRecognised() throws {
        for (host, loopback) in [("127.0.0.1", true), ("127.9.8.7", true), ("::1", true), ("::ffff:127.0.0.1", true),
                                 ("0.0.0.0", false), ("10.0.0.1", false), ("::", false), ("fe80::1", false),
                                 ("::ffff:10.0.0.1", false)] {
            let address = try #require(SocketAddress.numericHost(host, port: 80))
            #expect(address.isLoopback == loopback, "\(host)")
        }
    }
}
