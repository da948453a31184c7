using System.Text.RegularExpressions;
using ArcherIlgpu.Model.Tokenizers;
using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;

namespace ArcherIlgpu.Rl.Tests;

public class CountdownStepTests
{
    static readonly long[] Issue = [84, 9, 14, 28];

    // Every case worked by hand on 84 9 14 28 → 73.
    [Theory]
    [InlineData("84-9=75;28/14=2;75-2=73", "correct")]
    [InlineData("84-9=75;28/14=2;75-2=73\n", "correct")]                 // surrounding whitespace is ignored
    [InlineData("28/14=2;84-9=75;75-2=73", "correct")]                   // another order of the same steps
    [InlineData("9+84=93;28/14=2;93-2=91", "wrong_target")]              // legal and right, ends at 91
    [InlineData("84-9=75;75-14=61;61+28=89", "wrong_target")]            // uses an earlier result, ends at 89
    [InlineData("84-9=75;28/14=2;75-2=74", "arithmetic")]                // 75-2 is 73
    [InlineData("84+9=92;28/14=2;92-2=90", "arithmetic")]                // 84+9 is 93: the first wrong step decides
    [InlineData("84/9=9;28-14=14;14+9=23", "arithmetic")]                // 84/9 leaves a remainder
    [InlineData("9-84=75;28/14=2;75-2=73", "arithmetic")]                // 9-84 is negative
    [InlineData("84-9=75;28/14=2;75-75=0", "unavailable")]               // 75 was made once, used twice
    [InlineData("84-9=75;75-14=61;75-28=47", "unavailable")]             // 75 already used up by step 2
    [InlineData("84-9=75;84-14=70;75-70=5", "unavailable")]              // 84 used twice
    [InlineData("84-10=74;28/14=2;74-2=72", "unavailable")]              // 10 is not given
    [InlineData("84-10=99;28/14=2;99-2=97", "unavailable")]              // availability is checked before arithmetic
    [InlineData("9-84=-75;28/14=2;75-2=73", "format")]                   // a negative result cannot be written
    [InlineData("84-9=75;28/14=2", "format")]                            // too few steps: 75 and 2 are left, n-1 = 3 are required
    [InlineData("84-9=75;28/14=2;75-2=73;73-0=73", "format")]            // too many steps
    [InlineData("84-9=75;28/14=2;75-2=73;", "format")]                   // trailing separator
    [InlineData("84 - 9 = 75;28/14=2;75-2=73", "format")]                // no spaces inside the steps
    [InlineData("084-9=75;28/14=2;75-2=73", "format")]                   // leading zero
    [InlineData("84x9=756;28/14=2;756-2=754", "format")]
    [InlineData("84-9=75,28/14=2,75-2=73", "format")]
    [InlineData("", "format")]
    [InlineData("the answer is 73", "format")]
    public void VerdictsOfHandWorkedResponses(string completion, string verdict) =>
        Assert.Equal(verdict, CountdownStepVerifier.Check(Issue, 73, completion));

    [Theory]
    [InlineData("5-5=0;7+0=7", "correct")]          // a zero result is allowed and usable
    [InlineData("5-5=0;7/0=7", "arithmetic")]       // division by zero has no result
    [InlineData("5*5=25;25-7=18", "wrong_target")]  // 5 is given twice, so 5*5 is legal
    [InlineData("5*5=25;25-5=20", "unavailable")]   // but not three times
    public void ZeroDivisionByZeroAndRepeatedNumbers(string completion, string verdict) =>
        Assert.Equal(verdict, CountdownStepVerifier.Check([5, 5, 7], 7, completion));

    [Fact]
    public void SolverListsEveryStepSequenceOnce()
    {
        // Worked by hand: 2 and 1 give 3, 1, 2, 2 (+ - * /), so only "2+1=3" reaches 3.
        Assert.Equal(["2+1=3"], CountdownStepSolver.Solutions([1, 2], 3));
        Assert.Equal(["2+2=4", "2*2=4"], CountdownStepSolver.Solutions([2, 2], 4));
        Assert.Equal(["2/2=1"], CountdownStepSolver.Solutions([2, 2], 1));
        Assert.Equal(["2-2=0"], CountdownStepSolver.Solutions([2, 2], 0));
        Assert.Empty(CountdownStepSolver.Solutions([1, 1], 5));
        var issue = CountdownStepSolver.Solutions(Issue, 73);
        Assert.Contains("84-9=75;28/14=2;75-2=73", issue);
        Assert.Contains("28/14=2;84-9=75;75-2=73", issue);
        Assert.Equal(issue.Count, issue.Distinct().Count());
        foreach (var s in issue) Assert.Equal("correct", CountdownStepVerifier.Check(Issue, 73, s));
    }

    [Fact]
    public void SolverAgreesWithAnIndependentSearch()
    {
        // Brute force over ordered pairs (a op b and b op a), values 1..7, every target 0..60.
        for (long a = 1; a <= 7; a++)
            for (long b = a; b <= 7; b++)
                for (long c = b; c <= 7; c++)
                {
                    var reachable = Reachable([a, b, c]);
                    for (long target = 0; target <= 60; target++)
                        Assert.Equal(reachable.Contains(target), CountdownStepSolver.Solutions([a, b, c], target).Count > 0);
                }
    }

    static HashSet<long> Reachable(List<long> values)
    {
        if (values.Count == 1) return [values[0]];
        var result = new HashSet<long>();
        for (int i = 0; i < values.Count; i++)
            for (int j = 0; j < values.Count; j++)
            {
                if (i == j) continue;
                long x = values[i], y = values[j];
                var rest = values.Where((_, k) => k != i && k != j).ToList();
                var outcomes = new List<long> { x + y, x * y };
                if (x >= y) outcomes.Add(x - y);
                if (y != 0 && x % y == 0) outcomes.Add(x / y);
                foreach (var o in outcomes) result.UnionWith(Reachable([.. rest, o]));
            }
        return result;
    }

    static CountdownTask Steps(int min = 3, int max = 4) => (CountdownTask)TaskRegistry.Create("countdown",
        new Dictionary<string, string> { ["format"] = "steps", ["min_numbers"] = $"{min}", ["max_numbers"] = $"{max}" });

    [Fact]
    public void GeneratedProblemsAreInRangeSolvableAndWritable()
    {
        var task = Steps();
        var alphabet = CharTokenizer.ArithmeticAlphabet;
        var counts = new HashSet<int>();
        for (int i = 0; i < 200; i++)
        {
            var ex = task.Generate(5, i);
            Assert.Equal(ex, task.Generate(5, i));
            var numbers = CountdownTask.Numbers(ex);
            long target = long.Parse(ex.Answer);
            counts.Add(numbers.Length);
            Assert.InRange(numbers.Length, 3, 4);
            Assert.All(numbers, n => Assert.InRange(n, 1, 99));
            Assert.InRange(target, 10, 100);
            Assert.Equal(string.Join(" ", numbers) + ">" + target + ":", ex.Prompt);
            Assert.Matches(new Regex(@"^(\d+[-+*/]\d+=\d+;){" + (numbers.Length - 2) + @"}\d+[-+*/]\d+=\d+$"), ex.Solution!);
            Assert.Equal("correct", task.Verdict(ex, ex.Solution!));
            Assert.Equal(1.0, task.Reward(ex, ex.Solution!));
            Assert.Equal(0.0, task.Reward(ex, "1+1=2"));
            Assert.All(ex.Prompt + ex.Solution, c => Assert.Contains(c, alphabet));
        }
        Assert.Equal([3, 4], counts.Order());
        // The curriculum variant: three numbers only.
        var three = Steps(3, 3);
        for (int i = 0; i < 50; i++) Assert.Equal(3, CountdownTask.Numbers(three.Generate(1, i)).Length);
    }

    [Fact]
    public void DemonstrationsDrawAmongAllSolutions()
    {
        var task = Steps();
        int all = CountdownStepSolver.Solutions(Issue, 73).Count;
        Assert.True(all >= 4, $"{all} solutions");
        var drawn = Enumerable.Range(0, 60).Select(seed => task.Example(Issue, 73, TaskRandom.For(seed, 0)).Solution).ToHashSet();
        // 60 uniform draws among >= 4 solutions: fewer than 3 distinct ones would be a broken draw.
        Assert.True(drawn.Count >= 3, $"only {drawn.Count} distinct solutions drawn");
        Assert.All(drawn, s => Assert.Equal("correct", CountdownStepVerifier.Check(Issue, 73, s!)));
    }

    [Fact]
    public void OptionsAreChecked()
    {
        var e = Assert.Throws<TaskDataException>(() => TaskRegistry.Create("countdown", new Dictionary<string, string> { ["format"] = "tree" }));
        Assert.Contains("steps", e.Message);
        var e2 = Assert.Throws<TaskDataException>(() => TaskRegistry.Create("countdown", new Dictionary<string, string> { ["format"] = "steps", ["max_numbers"] = "6" }));
        Assert.Contains("max_numbers", e2.Message);
        // The expression form keeps its defaults and verdict-free reward.
        var expression = (CountdownTask)TaskRegistry.Create("countdown");
        Assert.Equal(new CountdownOptions(), expression.Options);
        Assert.Empty(((ITask)expression).Verdicts);
    }

    [Fact]
    public void ProblemFileLinesAndErrors()
    {
        var task = Steps();
        var file = new ProblemFileTask(task, "p.jsonl", ["""{"numbers":[84,9,14,28],"target":73}""", "", """{"numbers":[5,5,7],"target":7}"""]);
        Assert.Equal(2, file.Count);
        var first = file.Generate(0, 0);
        Assert.Equal("84 9 14 28>73:", first.Prompt);
        Assert.Equal(1.0, file.Reward(first, "84-9=75;28/14=2;75-2=73"));
        Assert.Equal("5 5 7>7:", file.Generate(0, 1).Prompt);
        // The same line gives another demonstration at another index or seed.
        Assert.True(Enumerable.Range(0, 30).Select(s => file.Generate(s, 0).Solution).Distinct().Count() >= 3);

        void Bad(string line, string expected)
        {
            var e = Assert.Throws<TaskDataException>(() => new ProblemFileTask(task, "p.jsonl", ["""{"numbers":[1,2],"target":3}""", line]));
            Assert.StartsWith("p.jsonl:2: ", e.Message);
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
        Bad("{oops", "not valid JSON");
        Bad("""{"numbers":[1,2]}""", "\"target\"");
        Bad("""{"numbers":"1 2","target":3}""", "array");
        Bad("""{"numbers":[1,2.5],"target":3}""", "\"numbers\"[1]");
        Bad("""{"numbers":[1,-2],"target":3}""", "0..");
        Bad("""{"numbers":[1],"target":3}""", "2 to 5");
        Bad("[1,2]", "JSON object");
        Assert.Contains("empty", Assert.Throws<TaskDataException>(() => new ProblemFileTask(task, "e.jsonl", [""])).Message);
    }

    [Fact]
    public void EvaluationAndRlMetricsCountVerdicts()
    {
        var task = Steps();
        var problems = Evaluator.HeldOut(task, 4);
        // Per problem: its solution twice, then two malformed answers.
        var sampler = new FixedSampler(p => [p.Solution!, p.Solution!, "garbage", p.Solution!.Replace(";", ",")]);
        var r = Evaluator.Evaluate(sampler, task, problems, new EvalOptions(Problems: 4, Samples: 4, Greedy: false));
        var m = r.ToMetrics();
        Assert.Equal(0.5, m["eval/verdict/correct"]);
        Assert.Equal(0.5, m["eval/verdict/format"]);
        Assert.Equal(0.0, m["eval/verdict/arithmetic"]);
        Assert.Equal(0.0, m["eval/verdict/unavailable"]);
        Assert.Equal(0.0, m["eval/verdict/wrong_target"]);
        var shares = TaskVerdicts.Shares(task, [(problems[0], "1+1=2"), (problems[0], problems[0].Solution!)]);
        Assert.Equal(0.5, shares["correct"]);
        Assert.Equal(0.5, shares["format"]);
    }

    sealed class FixedSampler(Func<TaskExample, string[]> answers) : ICompletionSampler
    {
        public IReadOnlyList<EvalCompletion> Sample(IReadOnlyList<TaskExample> problems, int n, double temperature, ulong seed) =>
            problems.SelectMany(p => answers(p).Take(n).Select(a => new EvalCompletion(a, a.Length + 1, true))).ToArray();
    }
}

public class CountdownPresetTests
{
    [Theory]
    // Qin et al. 2025, KempnerInstitute/Backtrack countdown/configs/sft-mix-4-cd-{3M,17M}-qwen.conf.
    [InlineData("countdown-3m", 256, 6, 4, 1, 512, 3.0e6, 3.7e6)]
    [InlineData("countdown-17m", 512, 8, 4, 1, 1024, 17.0e6, 18.5e6)]
    public void PresetsHaveThePapersShapes(string name, int hidden, int layers, int heads, int kvHeads, int ffn, double minParams, double maxParams)
    {
        var c = (ArcherIlgpu.Model.Llama.LlamaConfig)ArcherIlgpu.Model.Models.Preset(name);
        Assert.Equal("qwen2", c.ModelType);
        Assert.Equal((hidden, layers, heads, kvHeads, ffn), (c.Channels, c.Layers, c.Heads, c.KvHeads, c.Intermediate));
        Assert.Equal(hidden, c.Heads * c.HeadSize);
        Assert.Equal(CharTokenizer.ForArithmetic().VocabSize, c.VocabSize);
        Assert.InRange(c.ParameterCount, minParams, maxParams);
        c.Validate();
    }
}
