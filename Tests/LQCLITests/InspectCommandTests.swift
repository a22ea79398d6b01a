import Foundation
import Testing

/// `lqlora inspect` and `--version` on hand-made safetensors files.
struct InspectCommandTests {
    @Test(builtBinary)
    func malformedFileExitsOneWithANamedError() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("broken.safetensors")
        try craftSafetensors(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, buffer: [0, 0, 0, 0])
            .write(to: URL(fileURLWithPath: path))
        let result = try CLI.run(["inspect", path])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(result.stderr.contains(path) && result.stderr.contains("'w'"))
    }

    @Test(builtBinary)
    func inspectJSONAndVersion() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("ok.safetensors")
        try craftSafetensors(header: #"{"w":{"dtype":"U8","shape":[2,3],"data_offsets":[0,6]}}"#, buffer: [1, 2, 3, 4, 5, 6])
            .write(to: URL(fileURLWithPath: path))
        let result = try CLI.run(["inspect", path, "--json"])
        #expect(result.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect(json["num_tensors"] as? Int == 1 && json["num_parameters"] as? Int == 6 && json["bytes"] as? Int == 6)
        let version = try CLI.run(["--version"])
        #expect(version.status == 0 && version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let missing = try CLI.run(["inspect", dir.file("nope")])
        #expect(missing.status == 1 && missing.stderr.contains("nope"))
    }
}
