/// libFuzzer target: what the writers of versions.json read from outside, on hostile bytes:
/// the admin API's deploy body, and a versions file a deploy or revert edits.
///
/// Every input must end in a value or a typed error (never a trap). A document that reads
/// must write back as text that reads as the same document; a deploy or revert of it must
/// be one generation on, with the state before it first in history.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVersionsEdit(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: bytes + 1, count: size - 1))
    if bytes[0] % 2 == 0 {
        _ = try? DeployRequest(body: input)
        return 0
    }
    guard let document = try? VersionsDocument(parsing: input, file: "versions.json") else { return 0 }
    let text = document.text
    guard let again = try? VersionsDocument(parsing: Array(text.utf8), file: "versions.json") else {
        preconditionFailure("a document's own text must read back: \(text)")
    }
    precondition(again.text == text, "writing must be stable")
    let author = Author(actor: "fuzz@host", command: "fuzz", time: "2026-01-01T00:00:00.000Z")
    var edits: [VersionsDocument] = []
    if let reverted = try? document.reverting(to: nil, by: author) { edits.append(reverted.0) }
    if let name = document.versionNames.first, VersionsConfig.isValidName(name),
       let traffic = try? TrafficRequest.parse(Array(#"[{"name":"\#(name)","traffic_percent":100}]"#.utf8), source: "--versions"),
       let deployed = try? document.deploying(DeployRequest(traffic: traffic), by: author) {
        edits.append(deployed.0)
    }
    for edit in edits {
        precondition(edit.generation == document.generation + 1)
        precondition(edit.history.count <= VersionsConfig.historyLimit.entries)
        precondition(edit.history.first?[member: "versions"]?.compactText == JSONNode(.array(document.versions)).compactText)
        precondition((try? VersionsDocument(parsing: edit.bytes, file: "versions.json")) != nil, "an edit must read back")
    }
    return 0
}
