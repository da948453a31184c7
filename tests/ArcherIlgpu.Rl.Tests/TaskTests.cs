using ArcherIlgpu.Rl.Tasks;

namespace ArcherIlgpu.Rl.Tests;

public class AnswerExtractorTests
{
    [Theory]
    [InlineData("so the total is\n#### 42", "42")]
    [InlineData("#### 1,234\nmore text 7", "1,234")]
    [InlineData("thus \\boxed{17} and then 3", "17")]
    [InlineData("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}")]
    [InlineData("the answer is -12.", "-12")]
    [InlineData("5-3=2", "2")]
    [InlineData("we get 3/4", "3/4")]
    [InlineData("x = 1,000,000 apples", "1,000,000")]
    [InlineData("about .5", ".5")]
    [InlineData("no number here", null)]
    [InlineData("", null)]
    public void ExtractsTheFinalAnswer(string completion, string? expected) =>
        Assert.Equal(expected, AnswerExtractor.Extract(completion));

    [Theory]
    [InlineData("42", "42", true)]
    [InlineData("1,234", "1234", true)]
    [InlineData("0.5", "1/2", true)]
    [InlineData("\\frac{1}{2}", "0.5", true)]
    [InlineData("\\dfrac{3}{4}", "3/4", true)]
    [InlineData("$12$", "12", true)]
    [InlineData("-7", "−7", true)]
    [InlineData("42.", "42", true)]
    [InlineData("2.50", "5/2", true)]
    [InlineData("41", "42", false)]
    [InlineData("1,23", "123", false)]  // not a thousands separator: text comparison, not equal
    [InlineData("x+1", "x + 1", true)]  // not numbers: compared as text without spaces
    [InlineData(null, "1", false)]
    public void ComparesAnswers(string? extracted, string truth, bool equal) =>
        Assert.Equal(equal, AnswerExtractor.Matches(extracted, truth));

    [Fact]
    public void RationalArithmeticIsExact()
    {
        Rational eight = 8, three = 3;
        Assert.Equal((Rational)24, eight / (three - eight / three));
        Assert.True(Rational.TryParse("0.1", out var a));
        Assert.True(Rational.TryParse("0.2", out var b));
        Assert.Equal(new Rational(3, 10), a + b);
        Assert.Equal("-3/4", new Rational(3, -4).ToString());
    }
}

public class ArithmeticTaskTests
{
    [Fact]
    public void GenerationIsDeterministicBySeedAndIndex()
    {
        var task = new ArithmeticTask(new ArithmeticOptions(2, 4, "+-*/"));
        var a = Enumerable.Range(0, 50).Select(i => task.Generate(7, i)).ToArray();
        var b = Enumerable.Range(0, 50).Select(i => task.Generate(7, i)).Reverse().Reverse().ToArray();
        Assert.Equal(a, b);
        Assert.Equal(task.Generate(7, 3), new ArithmeticTask(new ArithmeticOptions(2, 4, "+-*/")).Generate(7, 3));
        Assert.NotEqual(a.Select(e => e.Prompt), Enumerable.Range(0, 50).Select(i => task.Generate(8, i).Prompt));
    }

    [Fact]
    public void AnswersAreCorrectAndSolutionsEarnReward()
    {
        var task = new ArithmeticTask(new ArithmeticOptions(1, 5, "+-*/"));
        for (int i = 0; i < 200; i++)
        {
            var ex = task.Generate(1, i);
            // Independent check: evaluate "a op b" with the Countdown parser's exact arithmetic.
            var expr = ex.Prompt.TrimEnd('=');
            Assert.Equal(Rational.TryParse(ex.Answer, out var ans) ? ans : throw new Exception(ex.Answer),
                EvaluateBinary(expr));
            Assert.Equal(1.0, task.Reward(ex, ex.Solution!));
            Assert.Equal(1.0, task.Reward(ex, $"#### {ex.Answer}"));
            Assert.Equal(0.0, task.Reward(ex, "nonsense"));
            Assert.Equal(0.0, task.Reward(ex, (long.Parse(ex.Answer) + 1).ToString()));
            Assert.Equal("", TaskAlphabet.Unsupported(ex.Prompt + ex.Solution));
        }
    }

    static Rational EvaluateBinary(string expr)
    {
        // Operands are non-negative; the operator is the first non-digit after position 0.
        int k = 1;
        while (char.IsAsciiDigit(expr[k])) k++;
        Rational a = long.Parse(expr[..k]), b = long.Parse(expr[(k + 1)..]);
        return expr[k] switch { '+' => a + b, '-' => a - b, '*' => a * b, _ => a / b };
    }

    [Fact]
    public void OptionsAreValidated()
    {
        Assert.Throws<TaskDataException>(() => new ArithmeticTask(new ArithmeticOptions(Operators: "+^")));
        Assert.Throws<TaskDataException>(() => new ArithmeticTask(new ArithmeticOptions(3, 2)));
        var noNeg = new ArithmeticTask(new ArithmeticOptions(1, 3, "-", AllowNegative: false));
        Assert.All(Enumerable.Range(0, 100), i => Assert.DoesNotContain("-", noNeg.Generate(0, i).Answer));
    }
}

public class CountdownTests
{
    static readonly long[] Classic = [3, 3, 8, 8];

    [Theory]
    [InlineData("8/(3-8/3)", CountdownVerdict.Correct)]
    [InlineData("8 ÷ (3 − 8 ÷ 3)", CountdownVerdict.Correct)]
    [InlineData("thinking...\n8/(3-8/3) = 24", CountdownVerdict.Correct)]
    [InlineData("8/(3-8/3)=25", CountdownVerdict.WrongValue)]
    [InlineData("8*3", CountdownVerdict.Correct)]              // subsets are allowed
    [InlineData("8*3+3-3", CountdownVerdict.ReusedNumber)]   // 3 is given twice, used three times
    [InlineData("8*3*1", CountdownVerdict.UnknownNumber)]
    [InlineData("8*3+8-8", CountdownVerdict.ReusedNumber)]
    [InlineData("8+8+8", CountdownVerdict.ReusedNumber)]
    [InlineData("3*8+0", CountdownVerdict.UnknownNumber)]
    [InlineData("24", CountdownVerdict.UnknownNumber)]
    [InlineData("8/(3-3)", CountdownVerdict.DivisionByZero)]
    [InlineData("8*(3+3", CountdownVerdict.Malformed)]
    [InlineData("-8*-3", CountdownVerdict.Malformed)]           // no unary minus
    [InlineData("8 3", CountdownVerdict.Malformed)]
    [InlineData("8+3", CountdownVerdict.WrongValue)]
    [InlineData("   \n  ", CountdownVerdict.Empty)]
    public void VerifierVerdicts(string completion, CountdownVerdict expected) =>
        Assert.Equal(expected, CountdownVerifier.Check(Classic, 24, completion));

    [Fact]
    public void SolverFindsTheFractionalSolution()
    {
        // 3 3 8 8 → 24 is only reachable through the fraction 8/3.
        var s = CountdownSolver.Solve(Classic, 24);
        Assert.NotNull(s);
        Assert.Equal(CountdownVerdict.Correct, CountdownVerifier.Check(Classic, 24, s!));
        Assert.Null(CountdownSolver.Solve([1, 1], 5));
    }

    [Fact]
    public void SolverAgreesWithBruteForceReachabilityOnSmallSets()
    {
        // Every integer 0..60 from {2, 3, 7}: solvable iff a brute-force enumeration of all expressions reaches it.
        long[] nums = [2, 3, 7];
        var reachable = AllValues(nums.Select(n => (Rational)n).ToList());
        for (long target = 0; target <= 60; target++)
        {
            var s = CountdownSolver.Solve(nums, target);
            Assert.Equal(reachable.Contains(target), s is not null);
            if (s is not null) Assert.Equal(CountdownVerdict.Correct, CountdownVerifier.Check(nums, target, s));
        }
    }

    /// <summary>Values of all expressions over any sub-multiset, by splitting the set in two every way.</summary>
    static HashSet<Rational> AllValues(List<Rational> xs)
    {
        var result = new HashSet<Rational>();
        int n = xs.Count;
        for (int mask = 1; mask < 1 << n; mask++)
        {
            var subset = Enumerable.Range(0, n).Where(i => (mask >> i & 1) == 1).Select(i => xs[i]).ToList();
            foreach (var v in Exact(subset)) result.Add(v);
        }
        return result;
    }

    static HashSet<Rational> Exact(List<Rational> xs)
    {
        if (xs.Count == 1) return [xs[0]];
        var result = new HashSet<Rational>();
        int n = xs.Count;
        for (int mask = 1; mask < (1 << n) - 1; mask++)
        {
            var left = Exact(Enumerable.Range(0, n).Where(i => (mask >> i & 1) == 1).Select(i => xs[i]).ToList());
            var right = Exact(Enumerable.Range(0, n).Where(i => (mask >> i & 1) == 0).Select(i => xs[i]).ToList());
            foreach (var a in left)
                foreach (var b in right)
                {
                    result.Add(a + b); result.Add(a - b); result.Add(a * b);
                    if (b != Rational.Zero) result.Add(a / b);
                }
        }
        return result;
    }

    [Fact]
    public void GeneratedProblemsAreSolvableDeterministicAndInTheAlphabet()
    {
        var task = new CountdownTask();
        for (int i = 0; i < 100; i++)
        {
            var ex = task.Generate(42, i);
            Assert.Equal(ex, task.Generate(42, i));
            var numbers = CountdownTask.Numbers(ex);
            long target = long.Parse(ex.Answer);
            Assert.InRange(numbers.Length, 3, 4);
            Assert.DoesNotContain(target, numbers);
            Assert.Equal(1.0, task.Reward(ex, ex.Solution!));
            // And the solver, asked afresh, solves it too.
            Assert.NotNull(CountdownSolver.Solve(numbers, target));
            Assert.Equal(0.0, task.Reward(ex, "1+1"));
            Assert.Equal("", TaskAlphabet.Unsupported(ex.Prompt + ex.Solution));
        }
    }

    [Fact]
    public void ImpossibleOptionsFailClearly()
    {
        var task = new CountdownTask(new CountdownOptions(MinNumbers: 2, MaxNumbers: 2, MaxNumber: 1, MinTarget: 50, MaxTarget: 50));
        var e = Assert.Throws<TaskDataException>(() => task.Generate(0, 0));
        Assert.Contains("no solvable problem", e.Message);
    }
}

public class JsonlAndRegistryTests
{
    [Fact]
    public void LoadsPromptsAndAnswers()
    {
        var task = new JsonlMathTask("mem.jsonl", [
            """{"prompt": "2+2=", "answer": "4"}""",
            "",
            """{"prompt": "half of 1", "answer": 0.5, "solution": "#### 1/2"}""",
        ]);
        Assert.Equal(2, task.Count);
        Assert.Equal("4", task.Generate(0, 0).Answer);
        Assert.Equal("0.5", task.Generate(0, 3).Answer); // wraps around
        Assert.Equal(1.0, task.Reward(task.Generate(0, 1), "it is \\boxed{\\frac{1}{2}}"));
        Assert.Equal(0.0, task.Reward(task.Generate(0, 0), "5"));
    }

    [Fact]
    public void BadLinesNameFileAndLine()
    {
        var e = Assert.Throws<TaskDataException>(() => new JsonlMathTask("data.jsonl", ["""{"prompt": "a", "answer": "1"}""", "{oops"]));
        Assert.StartsWith("data.jsonl:2:", e.Message);
        var e2 = Assert.Throws<TaskDataException>(() => new JsonlMathTask("data.jsonl", ["""{"prompt": "a"}"""]));
        Assert.Contains("data.jsonl:1", e2.Message);
        Assert.Contains("answer", e2.Message);
        var e3 = Assert.Throws<TaskDataException>(() => new JsonlMathTask("empty.jsonl", ["", "  "]));
        Assert.Contains("empty", e3.Message);
    }

    [Fact]
    public void LoadsFromAFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"archer-rl-test-{Guid.NewGuid():N}.jsonl");
        File.WriteAllLines(path, ["""{"prompt": "1+1=", "answer": 2}"""]);
        try
        {
            var task = TaskRegistry.Create("jsonl", new Dictionary<string, string> { ["path"] = path });
            Assert.Equal(1.0, task.Reward(task.Generate(0, 0), "2"));
        }
        finally { File.Delete(path); }
        Assert.Throws<TaskDataException>(() => TaskRegistry.Create("jsonl", new Dictionary<string, string> { ["path"] = path }));
    }

    [Fact]
    public void RegistryListsValidNamesAndOptions()
    {
        var e = Assert.Throws<ArgumentException>(() => TaskRegistry.Create("sudoku"));
        Assert.Contains("arithmetic", e.Message);
        Assert.Contains("countdown", e.Message);
        var e2 = Assert.Throws<TaskDataException>(() => TaskRegistry.Create("countdown", new Dictionary<string, string> { ["digits"] = "3" }));
        Assert.Contains("max_target", e2.Message);
        var e3 = Assert.Throws<TaskDataException>(() => TaskRegistry.Create("arithmetic", new Dictionary<string, string> { ["max_digits"] = "many" }));
        Assert.Contains("integer", e3.Message);
        var t = (ArithmeticTask)TaskRegistry.Create("arithmetic", new Dictionary<string, string> { ["max_digits"] = "2", ["operators"] = "*" });
        Assert.Equal(2, t.Options.MaxDigits);
        Assert.Contains("*", t.Generate(0, 0).Prompt);
    }
}
