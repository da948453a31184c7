using System.Diagnostics;
using ArcherIlgpu.Kernels;
using ArcherIlgpu.Model.Gpt2;
using ArcherIlgpu.Rl.Training;
using Xunit.Abstractions;

namespace ArcherIlgpu.Rl.Tests.Training;

public class ExploreTests(ITestOutputHelper output)
{
    [Fact]
    public void Explore()
    {
        int steps = int.Parse(Environment.GetEnvironmentVariable("SFT_STEPS") ?? "300");
        float lr = float.Parse(Environment.GetEnvironmentVariable("SFT_LR") ?? "0.003", System.Globalization.CultureInfo.InvariantCulture);
        var clock = Stopwatch.StartNew();
        var p = TinyArithmetic.Sft(steps, lr);
        output.WriteLine($"sft {steps} steps: {clock.Elapsed.TotalSeconds:F1}s");
        using var backend = new CpuBackend();
        using var model = new Gpt2Model(backend, TinyArithmetic.ModelConfig, p);
        clock.Restart();
        var e = TinyArithmetic.Evaluate(model);
        output.WriteLine($"eval {clock.Elapsed.TotalSeconds:F1}s: {string.Join(" ", e.ToMetrics().Select(kv => $"{kv.Key}={kv.Value:F3}"))}");
        foreach (var algo in (Environment.GetEnvironmentVariable("ALGOS") ?? "grpo").Split(','))
        {
            model.UploadParameters(p);
            var cfg = TinyArithmetic.Scaled(algo, lr: double.Parse(Environment.GetEnvironmentVariable("RL_LR") ?? "0.002", System.Globalization.CultureInfo.InvariantCulture));
            using var trainer = new RlTrainer(model, TinyArithmetic.Tokenizer, TinyArithmetic.Task, cfg, new RlTrainerOptions(Seed: 9));
            clock.Restart();
            int rlSteps = int.Parse(Environment.GetEnvironmentVariable("RL_STEPS") ?? "30");
            for (int s = 0; s < rlSteps; s++)
            {
                var r = trainer.Step();
                if (s % 5 == 0 || s == rlSteps - 1)
                    output.WriteLine($"{algo} {s}: reward {r.Metrics["reward/mean"]:F3} kept {r.Metrics["batch/kept_groups"]} ent {r.Metrics["entropy/all"]:F3} gn {r.Metrics["optim/grad_norm"]:F3} clip {r.Metrics["clip/fraction"]:F3} diff {r.Metrics["rollout/logprob_diff_max"]:E1} r1 {r.Metrics["ratio/first_max_abs_log_ratio"]:E1} t {r.Metrics["time/step_s"]:F3}");
            }
            double rlTime = clock.Elapsed.TotalSeconds;
            clock.Restart();
            var after = TinyArithmetic.Evaluate(model);
            output.WriteLine($"{algo}: rl {rlTime:F1}s eval {clock.Elapsed.TotalSeconds:F1}s: {string.Join(" ", after.ToMetrics().Select(kv => $"{kv.Key}={kv.Value:F3}"))}");
        }
    }
}
