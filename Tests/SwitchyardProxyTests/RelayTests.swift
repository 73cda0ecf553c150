import Glibc
import SwitchyardIO
import SwitchyardTesting
import Testing
@testable import SwitchyardProxy

@Suite struct RelayTests {
    @Test func aShortReadMeansTheSocketIsDrainedUnlessThePeerHungUp() {
        let buffer = ByteBuffer(capacity: 8192)
        let peer = FakeTransport()
        peer.incoming = [Array("hello".utf8)]
        guard case .data(let count, let drained) = Relay.fill(buffer, from: peer, peerHungUp: false) else {
            Issue.record("bytes were there")
            return
        }
        #expect(drained && count == 5)
        #expect(String(decoding: buffer.readableBytes, as: UTF8.self) == "hello")
        peer.incoming = [Array("more".utf8)]
        guard case .data(_, let afterHangUp) = Relay.fill(buffer, from: peer, peerHungUp: true) else {
            Issue.record("bytes were there")
            return
        }
        #expect(!afterHangUp, "after a hang-up, reading goes on until the end of file shows")
    }

    @Test func nothingWaitingIsDrainedAndAClosedPeerIsTheEnd() {
        let buffer = ByteBuffer(capacity: 64)
        let peer = FakeTransport()
        guard case .drained = Relay.fill(buffer, from: peer, peerHungUp: false) else {
            Issue.record("nothing was waiting")
            return
        }
        peer.endOfInput = true
        guard case .endOfFile = Relay.fill(buffer, from: peer, peerHungUp: false) else {
            Issue.record("the peer closed")
            return
        }
    }

    @Test func aFullPeerStopsTheSendAndItResumesWhereItStopped() throws {
        let head = ByteBuffer(capacity: 4096)
        let source = ByteBuffer(capacity: 8192)
        head.append("HEAD" as StaticString)
        source.append(String(repeating: "b", count: 5000))
        var pending = 5000
        var written = 0
        let peer = FakeTransport(window: 1000, room: 2500)
        #expect(try !Relay.send(head: head, source: source, pending: &pending, to: peer, written: &written))
        #expect(written == 2500 && peer.written.count == 2500)
        peer.room = .max
        #expect(try Relay.send(head: head, source: source, pending: &pending, to: peer, written: &written))
        #expect(peer.writtenText == "HEAD" + String(repeating: "b", count: 5000))
        #expect(pending == 0 && source.isEmpty && head.isEmpty)
    }

    @Test func aSmallBodyTravelsInTheHeadsWrite() throws {
        let head = ByteBuffer(capacity: 4096)
        let source = ByteBuffer(capacity: 64)
        head.append("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" as StaticString)
        source.append("ok" as StaticString)
        var pending = 2
        var written = 0
        let peer = FakeTransport()
        #expect(try Relay.send(head: head, source: source, pending: &pending, to: peer, written: &written))
        #expect(peer.writeCalls == 1)
        #expect(peer.writtenText.hasSuffix("\r\n\r\nok"))
    }

    @Test func aResetPeerIsAnError() {
        let head = ByteBuffer(capacity: 64)
        head.append("x" as StaticString)
        var pending = 0
        var written = 0
        let peer = FakeTransport()
        peer.resetByPeer = true
        #expect(throws: SystemError.self) {
            try Relay.send(head: head, source: head, pending: &pending, to: peer, written: &written)
        }
    }
}
