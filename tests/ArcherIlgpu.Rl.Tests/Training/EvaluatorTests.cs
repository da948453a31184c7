using ArcherIlgpu.Rl.Tasks;
using ArcherIlgpu.Rl.Training;
using MathNet.Numerics;

namespace ArcherIlgpu.Rl.Tests.Training;

public class EvaluatorTests
{
    /// <summary>A fixed fake policy: problem i gets Correct[i] right answers among n samples; greedy is right on even problems.</summary>
    sealed class ScriptedSampler(int[] correct) : ICompletionSampler
    {
        public IReadOnlyList<EvalCompletion> Sample(IReadOnlyList<TaskExample> problems, int n, double temperature, ulong seed)
        {
            var list = new List<EvalCompletion>();
            for (int i = 0; i < problems.Count; i++)
                for (int j = 0; j < n; j++)
                {
                    bool right = temperature == 0 ? i % 2 == 0 : j < correct[i];
                    // Right answers are 3 tokens long with entropy 0.5 each, wrong ones 5 tokens with entropy 1.5 each.
                    list.Add(right ? new EvalCompletion(problems[i].Answer, 3, true, 1.5, 3) : new EvalCompletion("no", 5, true, 7.5, 5));
                }
            return list;
        }
    }

    [Fact]
    public void PassAtKOfAFixedFakePolicy()
    {
        var task = new ArithmeticTask();
        int[] correct = [0, 1, 4, 7, 8, 2];
        const int n = 8;
        var problems = Evaluator.HeldOut(task, correct.Length);
        var r = Evaluator.Evaluate(new ScriptedSampler(correct), task, problems, new EvalOptions(Problems: correct.Length, Samples: n));

        Assert.Equal([1, 2, 4, 8], r.PassAtK.Keys);
        foreach (int k in new[] { 1, 2, 4, 8 })
        {
            // Chen et al.: 1 − C(n−c, k)/C(n, k), via MathNet's binomial coefficients.
            double expected = correct.Average(c => n - c < k ? 1.0 : 1.0 - SpecialFunctions.Binomial(n - c, k) / SpecialFunctions.Binomial(n, k));
            Assert.Equal(expected, r.PassAtK[k], 12);
        }
        Assert.Equal(22.0 / 48.0, r.AvgAtN, 12);
        Assert.Equal(r.AvgAtN, r.PassAtK[1], 12);
        Assert.Equal(3.0 / 6.0, r.GreedyAccuracy, 12);          // problems 0, 2, 4
        Assert.Equal((22 * 3 + 26 * 5) / 48.0, r.MeanResponseLength, 12);
        Assert.Equal((22 * 1.5 + 26 * 7.5) / (22 * 3 + 26 * 5.0), r.MeanEntropy, 12);
        Assert.Equal(correct, r.CorrectCounts);
        Assert.Equal(r.AvgAtN, r.ToMetrics()["eval/avg@8"]);
    }

    [Fact]
    public void KValuesArePowersOfTwoThenN()
    {
        Assert.Equal([1], Evaluator.KValues(1));
        Assert.Equal([1, 2, 4, 8], Evaluator.KValues(8));
        Assert.Equal([1, 2, 4, 8, 10], Evaluator.KValues(10));
    }
}
