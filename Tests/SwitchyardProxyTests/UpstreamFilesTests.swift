import Glibc
import Testing
@testable import SwitchyardProxy
@testable import SwitchyardRouting

@Suite struct UpstreamFilesTests {
    @Test func aTokenFileHoldsOneTokenAndWhiteSpace() {
        #expect(UpstreamFiles.token(in: Array("  abc.DEF-123_~+/=\n".utf8)) == Array("abc.DEF-123_~+/=".utf8))
        #expect(UpstreamFiles.token(in: Array("\n\n".utf8)) == nil)
        #expect(UpstreamFiles.token(in: Array("two words".utf8)) == nil)
        #expect(UpstreamFiles.token(in: Array("tok\u{7F}en".utf8)) == nil)
        #expect(UpstreamFiles.token(in: [UInt8](repeating: 0x61, count: 4097)) == nil)
    }

    @Test func tokensAreReadAgainAndAnInvalidOneKeepsTheLastGood() throws {
        var template = Array("/tmp/upstream-files-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { _ = system("rm -rf \(directory)") }
        func write(_ text: String) {
            let file = fopen("\(directory)/token", "w")!
            fputs(text, file)
            fclose(file)
        }
        let versions = VersionsConfig(service: "s", versions: [
            .init(name: "v1", trafficBasisPoints: 10000, endpoints: [Endpoint(host: "h", port: 1)], upstreamTokenFile: "token"),
        ])
        var files = UpstreamFiles(versionsPath: "\(directory)/versions.json")
        write("first\n")
        #expect(try files.load(versions))
        #expect(try files.load(versions) == false, "unchanged content is no change")
        #expect(files.upstreams(versions, serverNames: [["h"]])[0].authorization == Array("Authorization: Bearer first\r\n".utf8))
        write("not one token")
        #expect(throws: LoadError.self) { try files.load(versions) }
        #expect(files.upstreams(versions, serverNames: [["h"]])[0].authorization == Array("Authorization: Bearer first\r\n".utf8))
        write("second")
        #expect(try files.load(versions))
        #expect(files.upstreams(versions, serverNames: [["h"]])[0].authorization == Array("Authorization: Bearer second\r\n".utf8))
        #expect(files.paths == ["\(directory)/token"])
    }
}
