import Foundation
import LQFormats
import LQModel
import LQTensor
import LQTrain
import Testing

struct DistillationTests {
    /// scripts/make-distillation-fixtures.py: teacher = the tiny base, student = base + adapter.
    func fixture() throws -> (student: LlamaModel, params: AdapterParameters, teacher: LlamaModel, file: SafeTensorsFile) {
        let (model, params) = try tinyModelWithAdapter()
        let teacher = try LlamaModel(directory: trainFixtures + "/tiny")
        return (model, params, teacher, try SafeTensorsFile(path: trainFixtures + "/tiny/distill.safetensors"))
    }

    func ints(_ t: Tensor) -> [[Int]] { (0..<t.shape[0]).map { r in (0..<t.shape[1]).map { Int(t[r, $0]) } } }

    func check(topK: Int?) throws {
        let (student, params, teacherModel, file) = try fixture()
        let tokens = ints(try file.floatTensor("input_ids")), labels = ints(try file.floatTensor("labels"))
        let lengths = try file.floatTensor("lengths").array.map { Int($0) }
        let weights = try file.floatTensor("weights").array.map(Double.init)
        var teacher: any Teacher = LiveTeacher(model: teacherModel, tokens: tokens)
        if let topK {  // the top-k support through the cache a run would build
            let directory = NSTemporaryDirectory() + "lqlora-teacher-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cache = try TeacherCache.open(directory: directory, teacher: trainFixtures + "/tiny", topK: topK, vocab: student.config.vocabSize,
                                              sequences: zip(tokens, lengths).map { Array($0[0..<$1]) }, loadTeacher: { teacherModel }, log: { _ in })
            try cache.select(tokens: tokens, lengths: lengths)
            teacher = cache
        }
        let objective = Distillation(labels: labels, lengths: lengths, vocabularySize: student.config.vocabSize, teacher: teacher,
                                     klWeight: weights[0], ceWeight: weights[1], sequences: tokens.count, targets: targetCount(labels))
        var rng = SeededGenerator(seed: 0)
        let loss = student.accumulateGradients(tokens: tokens, objective: objective, into: params, rng: &rng)
        let prefix = topK == nil ? "" : "topk_"
        let expectedKL = Double(try file.floatTensor(prefix + "kl").array[0]), expectedLoss = Double(try file.floatTensor(prefix + "loss").array[0])
        let kl = loss.divergence / Double(tokens.count)
        #expect(loss.divergenceRows == lengths.reduce(0, +), "the padding takes no part in the KL")
        #expect(abs(kl - expectedKL) <= 1e-5 * expectedKL, "KL \(kl) vs torch \(expectedKL)")
        #expect(abs(loss.mean - Double(try file.floatTensor("ce").array[0])) <= 1e-5 * loss.mean, "CE \(loss.mean)")
        #expect(abs(objective.value(of: loss) - expectedLoss) <= 1e-5 * expectedLoss, "loss \(objective.value(of: loss)) vs torch \(expectedLoss)")
        for (name, grad) in zip(params.names, params.grads) {
            let reference = try file.floatTensor(prefix + "grad." + name)
            let (worst, scale) = (maxAbsDifference(grad, reference), reference.array.map(abs).max() ?? 0)
            #expect(scale > 0 && worst <= 1e-4 * scale + 1e-7, "\(name): max |Δgrad| \(worst) against max |grad| \(scale)")
        }
    }

    @Test func klPlusCrossEntropyAndEveryLoRAGradientMatchTorch() throws { try check(topK: nil) }

    @Test func topKSupportKLAndItsGradientsMatchTorch() throws { try check(topK: 5) }

    /// Splitting a batch into micro-batches with the step's divisors gives the one-batch gradient.
    @Test func accumulationGivesTheOneBatchGradient() throws {
        let (student, params, teacherModel, file) = try fixture()
        let tokens = ints(try file.floatTensor("input_ids")), labels = ints(try file.floatTensor("labels"))
        let lengths = try file.floatTensor("lengths").array.map { Int($0) }
        func run(_ parts: [Range<Int>]) -> ([Tensor], Double) {
            params.zeroGradients()
            var total = TokenLoss(), value = 0.0
            for part in parts {
                let t = Array(tokens[part]), l = Array(labels[part])
                let objective = Distillation(labels: l, lengths: Array(lengths[part]), vocabularySize: student.config.vocabSize,
                                             teacher: LiveTeacher(model: teacherModel, tokens: t), klWeight: 0.7, ceWeight: 2,
                                             sequences: tokens.count, targets: targetCount(labels))
                var rng = SeededGenerator(seed: 0)
                let loss = student.accumulateGradients(tokens: t, objective: objective, into: params, rng: &rng)
                total += loss
                value += objective.value(of: loss)
            }
            return (params.grads.map { $0.copy() }, value)
        }
        let (whole, wholeValue) = run([0..<2]), (split, splitValue) = run([0..<1, 1..<2])
        #expect(abs(wholeValue - splitValue) <= 1e-6 * wholeValue)
        for (a, b) in zip(whole, split) { #expect(maxAbsDifference(a, b) <= 1e-6 * (a.array.map(abs).max() ?? 1)) }
    }
}

/// `distill.teacher` in the training loop: the Workspace's tiny model distilled from itself.
struct DistillationTrainerTests {
    /// B starts at zero, so the student at step 1 is the teacher: KL(p ‖ p) = 0, and the
    /// cross-entropy is the plain run's.
    @Test func aStudentThatIsItsTeacherStartsAtZeroKLAndThePlainCrossEntropy() throws {
        let ws = try Workspace()
        let oneStep = ["train.max_steps=1", "eval.every=0"]
        let plain = try Trainer(config: try TrainConfig(yaml: ws.yaml(), overrides: oneStep))
        _ = try plain.run()
        let ce = try metricLosses(ws.root + "/run")[1]!
        let settings = try TrainConfig(yaml: ws.yaml("distill: {teacher: \(ws.root)/model, kl_weight: 1.0, ce_weight: 3.0}"),
                                       overrides: oneStep + ["output_dir=\(ws.root)/distilled"])
        var reports: [StepReport] = []
        let trainer = try Trainer(config: settings)
        trainer.onStep = { reports.append($0) }
        _ = try trainer.run()
        let first = try #require(reports.first)
        #expect(abs(first.divergence ?? .nan) <= 1e-6, "KL \(String(describing: first.divergence))")
        #expect(abs((first.crossEntropy ?? .nan) - ce) <= 1e-9 * ce, "CE \(String(describing: first.crossEntropy)) vs plain \(ce)")
        #expect(abs(first.loss - 3 * ce) <= 1e-5 * ce)
        let record = try String(contentsOfFile: ws.root + "/distilled/metrics.jsonl", encoding: .utf8)
        #expect(record.contains("\"kl\": ") && record.contains("\"ce\": ") && record.contains("\"val_kl_per_token\": "))
    }

    @Test func aTeacherWithAnotherVocabularyOrWeightsWithoutATeacherAreNamedBeforeAnythingStarts() throws {
        let ws = try Workspace()
        let other = ws.root + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: trainFixtures + "/tiny/config.json", toPath: other + "/config.json")
        try FileManager.default.copyItem(atPath: trainFixtures + "/tiny/model.safetensors", toPath: other + "/model.safetensors")
        #expect {
            _ = try Trainer(config: try ws.config("distill: {teacher: \(other)}"))
        } throws: { "\($0)" == "distill.teacher \(other): has a vocabulary of 128 tokens, the student \(ws.root)/model 1200" }
        #expect(!FileManager.default.fileExists(atPath: ws.root + "/run"))
        #expect(throws: ConfigError.badValue(key: "distill.ce_weight", detail: "applies only with distill.teacher set")) {
            try ws.config("distill: {ce_weight: 5}")
        }
    }

    /// A full-logit cache (fp16) trains as the live teacher does up to fp16's rounding of the
    /// logits; a top-k cache is built once, reused (no teacher load), rebuilt when k changes.
    @Test func theTeacherCacheStandsInForTheLiveTeacher() throws {
        let ws = try Workspace()
        let base = ["train.max_steps=3", "eval.every=0", "lora.dropout=0", "distill.teacher=\(ws.root)/model"]
        func run(_ name: String, _ extra: [String]) throws -> [Int: Double] {
            let trainer = try Trainer(config: try TrainConfig(yaml: ws.yaml(), overrides: base + extra + ["output_dir=\(ws.root)/\(name)"]))
            _ = try trainer.run()
            return try metricLosses(ws.root + "/\(name)")
        }
        let live = try run("live", [])
        let full = try run("full", ["distill.teacher_cache=\(ws.root)/cache-full", "distill.cache_top_k=0"])
        for step in 1...3 { #expect(abs(full[step]! - live[step]!) <= 1e-3 * live[step]!, "step \(step): \(full[step]!) vs live \(live[step]!)") }
        var notes: [String] = []
        let topk = try TrainConfig(yaml: ws.yaml(), overrides: base + ["distill.teacher_cache=\(ws.root)/cache", "distill.cache_top_k=8", "output_dir=\(ws.root)/k8"])
        _ = try Trainer(config: topk) { notes.append($0) }
        let made = try FileManager.default.attributesOfItem(atPath: ws.root + "/cache/teacher-cache.safetensors")[.modificationDate] as! Date
        _ = try Trainer(config: topk) { notes.append($0) }
        #expect(try FileManager.default.attributesOfItem(atPath: ws.root + "/cache/teacher-cache.safetensors")[.modificationDate] as! Date == made)
        #expect(notes.isEmpty)
        var k4 = topk
        k4.cacheTopK = 4
        _ = try Trainer(config: k4) { notes.append($0) }
        #expect(notes.count == 1 && notes[0].contains("rebuilding"), "\(notes)")
        let file = try SafeTensorsFile(path: ws.root + "/cache/teacher-cache.safetensors")
        #expect(try file.entry("indices").shape.last == 4)
        // A damaged cache (here: its indices out of the vocabulary) is rebuilt, never read.
        let path = ws.root + "/cache/teacher-cache.safetensors", entry = try file.entry("indices")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let start = file.dataStart + entry.dataRange.lowerBound
        bytes.replaceSubrange(start..<(start + 4), with: [0xFF, 0xFF, 0xFF, 0x7F])
        try bytes.write(to: URL(fileURLWithPath: path))
        notes = []
        _ = try Trainer(config: k4) { notes.append($0) }
        #expect(notes.count == 1 && notes[0].contains("rebuilding"), "\(notes)")
    }

    /// As lrec.py does, a non-finite loss skips its step (counted in metrics.jsonl) until
    /// train.max_skipped_steps consecutive skips, then the run stops naming the step.
    @Test func nonFiniteStepsAreSkippedAndCountedUpToTheLimit() throws {
        let ws = try Workspace(nanWeight: true)
        let trainer = try Trainer(config: try TrainConfig(yaml: ws.yaml(), overrides: ["train.grad_accum=1", "train.max_skipped_steps=2"]))
        #expect { _ = try trainer.run() } throws: { "\($0)".contains("at step 1") }
        #expect(trainer.skippedSteps == 3)
        let text = try String(contentsOfFile: ws.root + "/run/metrics.jsonl", encoding: .utf8)
        #expect(text.components(separatedBy: "\"skipped\": true").count - 1 == 2)
    }
}
