import Foundation
import LQFormats
import LQModel
import Testing

/// PEFTKeys spells the names PEFT wrote into the fixture adapter (scripts/make-cli-fixtures.py)
/// and the ones the model's adapter loader looks up.
struct PEFTKeysTests {
    static let adapter = PipelineOracleTests.root + "/Tests/LQCLITests/Fixtures/mha/adapter"

    @Test func keysAreThoseOfPEFTAndOfTheLoader() throws {
        let file = try SafeTensorsFile(path: Self.adapter + "/" + PEFTAdapter.weightsFile)
        let module = "model.layers.1.self_attn.q_proj"
        #expect(PEFTKeys.lora(module: module, matrix: .a) == "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        #expect(file.contains(PEFTKeys.lora(module: module, matrix: .a)) && file.contains(PEFTKeys.lora(module: module, matrix: .b)))
        #expect(LinearSite.projection(layer: 1, .q).module == module)
        #expect(PEFTKeys.module(ofWeight: module + ".weight") == module)
        #expect(PEFTAdapter.targetModules(["model.layers.1.mlp.up_proj", "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"]) == ["q_proj", "up_proj"])
    }
}
