using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Rl.Tests;

public class HeldOutTests
{
    /// <summary>The problem's identity computed here, independently of the task: Countdown's sorted numbers and target, else the prompt.</summary>
    static string Key(TaskExample e) => e.Data is not null && e.Data.TryGetValue(CountdownTask.NumbersKey, out var numbers)
        ? string.Join(" ", numbers.Split(' ').Select(long.Parse).Order()) + ">" + e.Answer
        : e.Prompt;

    static readonly HashSet<long> UnseenTargets = [13, 24, 37, 42, 58, 61, 76, 89, 95];   // as documented in the README

    public static TheoryData<string, string[], int, int> Tasks => new()
    {
        { "arithmetic", ["min_digits=2", "max_digits=2", "operators=+"], 100, 2000 },
        { "arithmetic", ["min_digits=1", "max_digits=1", "operators=+"], 16, 2000 },
        { "arithmetic", [], 100, 2000 },
        { "countdown", [], 40, 150 },   // the expression solver is slower: fewer draws
        { "countdown", ["format=steps"], 100, 400 },
        { "countdown", ["format=steps", "min_numbers=3", "max_numbers=3"], 100, 400 },
    };

    static ITask Create(string name, string[] options) =>
        TaskRegistry.Create(name, options.Select(o => o.Split('=')).ToDictionary(kv => kv[0], kv => kv[1]));

    [Theory]
    [MemberData(nameof(Tasks))]
    public void EvaluationSetIsDistinctAndNeverInATrainingStream(string name, string[] options, int evalCount, int trainCount)
    {
        var task = Create(name, options);
        var eval = Evaluator.HeldOut(task, evalCount);
        Assert.Equal(evalCount, eval.Count);
        var evalKeys = eval.Select(Key).ToHashSet();
        Assert.Equal(evalCount, evalKeys.Count);

        // The streams train-rl (a data cursor over the training view), make-sft-data and the demo read, at several seeds.
        var training = HeldOut.TrainingView(task);
        foreach (long seed in new long[] { 1, 2, HeldOut.EvalSeed })
        {
            var cursor = new DataCursor(training, seed);
            for (int i = 0; i < trainCount; i++)
            {
                var e = cursor.Next().Example;
                Assert.DoesNotContain(Key(e), evalKeys);
                if (name == "countdown") Assert.DoesNotContain(long.Parse(e.Answer), UnseenTargets);
            }
        }
        if (name == "countdown")
        {
            Assert.DoesNotContain(eval, e => UnseenTargets.Contains(long.Parse(e.Answer)));
            var unseen = Evaluator.HeldOut(task, 30, group: CountdownTask.UnseenTargetsGroup);
            Assert.All(unseen, e => Assert.Contains(long.Parse(e.Answer), UnseenTargets));
            Assert.Equal(30, unseen.Select(Key).Distinct().Count());
        }
    }

    [Fact]
    public void AboutATenthOfAFiniteProblemSpaceIsHeldOut()
    {
        var prompts = Enumerable.Range(10, 90).SelectMany(a => Enumerable.Range(10, 90).Select(b => $"{a}+{b}=")).ToArray();
        int held = prompts.Count(HeldOut.InHeldOutShare);
        // 8,100 problems at 10%: 810 expected, standard deviation 27.
        Assert.InRange(held, 700, 920);
    }

    [Fact]
    public void AskingForMoreThanAreHeldOutIsAClearError()
    {
        var oneDigit = Create("arithmetic", ["min_digits=1", "max_digits=1", "operators=+"]);
        // Worked out independently: 16 of the 100 one-digit sums fall in the hash share.
        int held = Enumerable.Range(0, 10).SelectMany(a => Enumerable.Range(0, 10).Select(b => $"{a}+{b}=")).Count(HeldOut.InHeldOutShare);
        Assert.Equal(16, held);
        Assert.Equal(16, Evaluator.HeldOut(oneDigit, 16).Count);
        var e = Assert.Throws<TaskDataException>(() => Evaluator.HeldOut(oneDigit, 17));
        Assert.Contains("only 16", e.Message);
        Assert.Contains("17", e.Message);
    }

    [Fact]
    public void AFixedDatasetSplitsIntoDisjointParts()
    {
        var lines = Enumerable.Range(0, 200).Select(i => $$"""{"prompt": "{{i}}+1=", "answer": "{{i + 1}}"}""").ToArray();
        var task = new JsonlMathTask("mem.jsonl", lines);
        var training = HeldOut.TrainingView(task);
        var trainPrompts = Enumerable.Range(0, (int)training.Count!).Select(i => training.Generate(0, i).Prompt).ToHashSet();
        int heldCount = lines.Length - trainPrompts.Count;
        Assert.InRange(heldCount, 5, 40);   // 10% of 200, loosely
        var eval = Evaluator.HeldOut(task, heldCount);
        Assert.Empty(eval.Select(e => e.Prompt).Intersect(trainPrompts));
        Assert.Equal(lines.Length, trainPrompts.Count + eval.Select(e => e.Prompt).Distinct().Count());
        Assert.Throws<TaskDataException>(() => Evaluator.HeldOut(task, heldCount + 1));
    }

    [Fact]
    public void AProblemsFileTrainsOnlyOnItsTrainingPart()
    {
        var task = new CountdownTask(CountdownOptions.Steps);
        // Both orders of the same numbers are one problem: held out together or trained on together.
        var lines = new List<string>();
        for (int t = 10; t <= 100; t++) lines.Add($$"""{"numbers":[{{t}},1,1],"target":{{t}}}""");
        for (int t = 10; t <= 100; t++) lines.Add($$"""{"numbers":[1,1,{{t}}],"target":{{t}}}""");
        var file = new ProblemFileTask(task, "mem.jsonl", lines);
        var training = HeldOut.TrainingView(file);
        var trained = Enumerable.Range(0, (int)training.Count!).Select(i => training.Generate(3, i)).ToList();
        Assert.Equal(0, trained.Count % 2);
        Assert.DoesNotContain(trained, e => UnseenTargets.Contains(long.Parse(e.Answer)));
        Assert.All(trained, e => Assert.False(HeldOut.InHeldOutShare(Key(e))));
        var targets = trained.Select(e => long.Parse(e.Answer)).ToList();
        Assert.All(targets.GroupBy(t => t), g => Assert.Equal(2, g.Count()));
    }
}
