import CKernels
import Foundation
import LQTensor

/// A teacher's next-token distribution at some rows of a batch: the full logits, or the top-k
/// support a compact cache keeps.
public enum TeacherRows {
    /// Raw logits [rows, vocab].
    case logits(Tensor)
    /// `width` entries a row: vocabulary indices and log-probabilities under the full normaliser.
    case support(indices: [Int32], logProbabilities: [Float], width: Int)
}

/// Where a distillation's teacher distribution comes from.
public protocol Teacher {
    /// The teacher at `rows` (indices into the flattened [batch·length] positions, ascending).
    func distribution(rows: ArraySlice<Int>) -> TeacherRows
}

/// The dense model as teacher, on the fly: one forward per micro-batch keeps the final hidden
/// states ([batch·length, hidden], small), and the LM head makes a chunk of logits at a time, so
/// the memory is the teacher's weights plus one chunk of logits.
public final class LiveTeacher: Teacher {
    let model: LlamaModel
    let hidden: Tensor

    public init(model: LlamaModel, tokens: [[Int]]) {
        self.model = model
        hidden = model.hiddenStates(tokens)
    }

    public func distribution(rows: ArraySlice<Int>) -> TeacherRows {
        let h = hidden.shape[1], x = Tensor(uninitialized: [rows.count, h])
        for (k, i) in rows.enumerated() { (x.pointer + k * h).update(from: hidden.pointer + i * h, count: h) }
        return .logits((model.lmHead ?? model.embed)(x))
    }
}

/// INT2.1 / LREC's loss (xTuring's lrec.py): kl_weight · KL(teacher ‖ student) + ce_weight · CE.
/// KL = Σ over the real (non-padding) positions and the vocabulary of p_t (log p_t − log p_s),
/// divided by the number of sequences (KLDivLoss's "batchmean" on log-softmaxes); CE is the causal
/// cross-entropy over the labelled targets, divided by their count. Under gradient accumulation both
/// divisors are the whole step's, so the step's loss is what one large batch would give. With a
/// top-k teacher the KL is the sum over the kept support only (the teacher's remaining mass left out).
public struct Distillation: Objective {
    public let rows: [Int]
    /// Each row's next-token label (ignoreLabel: the row is distilled only).
    let labels: [Int]
    let teacher: any Teacher
    let klScale: Double, ceScale: Double

    /// `lengths`: each sequence's real tokens (the rest is padding). `sequences` and `targets`
    /// normalise the KL and CE terms (the step's totals under accumulation).
    public init(labels: [[Int]], lengths: [Int], vocabularySize vocab: Int, teacher: any Teacher,
                klWeight: Double, ceWeight: Double, sequences: Int, targets: Int) {
        precondition(lengths.count == labels.count, "one length per sequence")
        var rows: [Int] = [], next: [Int] = []
        let length = labels.first?.count ?? 0
        for (b, seq) in labels.enumerated() {
            precondition(seq.count == length && lengths[b] <= length, "labels must match the tokens' shape")
            for t in 0..<lengths[b] {
                let label = t + 1 < length ? seq[t + 1] : ignoreLabel
                precondition(label < vocab, "label \(label) outside the vocabulary")
                rows.append(b * length + t)
                next.append(label > ignoreLabel ? label : ignoreLabel)
            }
        }
        self.rows = rows
        self.labels = next
        self.teacher = teacher
        klScale = klWeight / Double(max(sequences, 1))
        ceScale = ceWeight / Double(max(targets, 1))
    }

    public func evaluate(_ logits: Tensor, chunk: Range<Int>, gradient: Bool, into loss: inout TokenLoss) {
        let vocab = logits.shape[1]
        let target = teacher.distribution(rows: rows[chunk])
        var p = [Float](repeating: 0, count: vocab)  // the teacher's probabilities of one row (dense teacher)
        for (k, label) in labels[chunk].enumerated() {
            let z = logits.pointer + k * vocab
            let lseS = lq_logsumexp(z, Int64(vocab))
            var divergence = 0.0, mass = 1.0
            switch target {
            case let .logits(t):
                // KL = Σ p_j (t_j − z_j) − lse_t + lse_s, since Σ p_j = 1.
                let row = t.pointer + k * vocab
                let lseT = lq_logsumexp(row, Int64(vocab))
                p.withUnsafeMutableBufferPointer { pb in
                    pb.baseAddress!.update(from: row, count: vocab)
                    lq_softmax(pb.baseAddress!, Int64(vocab))
                    for j in 0..<vocab { divergence += Double(pb[j]) * Double(row[j] - z[j]) }
                }
                divergence += lseS - lseT
            case let .support(indices, logProbabilities, width):
                mass = 0
                for e in (k * width)..<((k + 1) * width) {
                    let logp = Double(logProbabilities[e]), pj = exp(logp)
                    divergence += pj * (logp - Double(z[Int(indices[e])]) + lseS)
                    mass += pj
                }
            }
            loss.divergence += divergence
            loss.divergenceRows += 1
            if label > ignoreLabel {
                loss.sum += lseS - Double(z[label])
                loss.targets += 1
            }
            guard gradient else { continue }
            // ∂/∂z = klScale·(mass·softmax(z) − p) + ceScale·(softmax(z) − onehot(label)).
            let hasTarget = label > ignoreLabel
            let scale = Float(klScale * mass + (hasTarget ? ceScale : 0)), kl = Float(klScale)
            lq_softmax(z, Int64(vocab))
            for j in 0..<vocab { z[j] *= scale }
            switch target {
            case .logits:
                for j in 0..<vocab { z[j] -= kl * p[j] }
            case let .support(indices, logProbabilities, width):
                for e in (k * width)..<((k + 1) * width) { z[Int(indices[e])] -= kl * Float(exp(Double(logProbabilities[e]))) }
            }
            if hasTarget { z[label] -= Float(ceScale) }
        }
    }

    /// The objective's value from its running sums: kl_weight·KL/sequences + ce_weight·CE/targets
    /// (the same weights and divisors the gradient uses).
    public func value(of loss: TokenLoss) -> Double { klScale * loss.divergence + ceScale * loss.sum }
}
