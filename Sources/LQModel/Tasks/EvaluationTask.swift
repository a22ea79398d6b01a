/// The tasks `eval --task` names: the zero-shot multiple-choice tasks and the chain-of-thought
/// faithfulness probes.
public enum EvaluationTask: Equatable, Sendable {
    case multipleChoice(MultipleChoiceTask)
    case chainOfThoughtFaithfulness

    public static let faithfulnessName = "cot-faithfulness"

    /// Every task name, in the order an unknown name lists them.
    public static var known: [String] { MultipleChoiceTask.allCases.map(\.rawValue) + [faithfulnessName] }

    /// The task a name names, or an error listing the known ones.
    public static func named(_ name: String) throws -> EvaluationTask {
        if let t = MultipleChoiceTask(rawValue: name) { return .multipleChoice(t) }
        if name == faithfulnessName { return .chainOfThoughtFaithfulness }
        throw TaskError.unknownTask(name: name, known: known)
    }
}
