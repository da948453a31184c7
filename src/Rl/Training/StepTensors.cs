using ArcherIlgpu.Rl.Algorithms;
using ArcherIlgpu.Rl.Losses;

namespace ArcherIlgpu.Rl.Training;

/// <summary>
/// The host-side tensors of one training step, all [Rows, T] row-major over the kept rollouts. Row i is
/// prompt ++ response left-aligned: position t predicts token t+1, so the response's k-th token is the
/// target at position |prompt| − 1 + k, where the mask is 1 (every generated token, the end token
/// included); prompt and padding positions have mask 0.
/// </summary>
internal sealed class StepTensors
{
    public int Rows, T, GroupSize, ValidTokens;
    public int Groups => Rows / GroupSize;
    public int[] Inputs = [], Targets = [];
    public float[] Mask = [], RolloutLogProbs = [], Advantages = [], OldLogProbs = [], OldEntropies = [], RefLogProbs = [];
    public float[] RowRewards = [], RowAdvantages = [];
    /// <summary>Token classes fixed once per rollout (ReclassifyEveryPass = false), else empty.</summary>
    public byte[] Classes = [];
    int padToken;

    // Scratch of one padded micro-batch.
    public int[] MicroInputs = [], MicroTargets = [];
    public float[] MicroLogProbs = [], MicroEntropies = [], MicroDLogProbs = [];

    public static StepTensors Build(RolloutBatch batch, AlgorithmConfig config, int padToken)
    {
        var kept = batch.Kept;
        int R = kept.Count;
        int T = kept.Max(r => r.PromptTokens.Length + r.ResponseTokens.Length) - 1;
        var s = new StepTensors { Rows = R, T = T, GroupSize = batch.GroupSize, padToken = padToken };
        int n = R * T;
        s.Inputs = new int[n]; s.Targets = new int[n];
        Array.Fill(s.Inputs, padToken); Array.Fill(s.Targets, padToken);
        s.Mask = new float[n]; s.RolloutLogProbs = new float[n]; s.Advantages = new float[n];
        s.OldLogProbs = new float[n]; s.OldEntropies = new float[n]; s.RefLogProbs = new float[n];
        for (int i = 0; i < R; i++)
        {
            var r = kept[i];
            int lp = r.PromptTokens.Length, len = lp + r.ResponseTokens.Length;
            for (int t = 0; t + 1 < len; t++)
            {
                int at = i * T + t;
                s.Inputs[at] = t < lp ? r.PromptTokens[t] : r.ResponseTokens[t - lp];
                int k = t + 1 - lp;   // index of the target within the response, < 0 inside the prompt
                s.Targets[at] = k < 0 ? r.PromptTokens[t + 1] : r.ResponseTokens[k];
                if (k >= 0) { s.Mask[at] = 1f; s.RolloutLogProbs[at] = r.RolloutLogProbs[k]; s.ValidTokens++; }
            }
        }
        s.RowRewards = kept.Select(r => r.Reward).ToArray();
        s.RowAdvantages = new float[R];
        Losses.Advantages.Compute(config.Advantage, s.RowRewards, batch.GroupSize, s.RowAdvantages, config.AdvantageEpsilon);
        Losses.Advantages.BroadcastToTokens(s.RowAdvantages, s.Mask, T, s.Advantages);
        return s;
    }

    /// <summary>Copies the inputs and targets of <paramref name="rows"/> into the micro-batch scratch, padding to <paramref name="micro"/> rows.</summary>
    public void GatherInputs(ReadOnlySpan<int> rows, int micro)
    {
        int n = micro * T;
        if (MicroInputs.Length != n)
        {
            MicroInputs = new int[n]; MicroTargets = new int[n];
            MicroLogProbs = new float[n]; MicroEntropies = new float[n]; MicroDLogProbs = new float[n];
        }
        Array.Fill(MicroInputs, padToken); Array.Fill(MicroTargets, padToken);
        for (int j = 0; j < rows.Length; j++)
        {
            Inputs.AsSpan(rows[j] * T, T).CopyTo(MicroInputs.AsSpan(j * T));
            Targets.AsSpan(rows[j] * T, T).CopyTo(MicroTargets.AsSpan(j * T));
        }
    }

    /// <summary>Writes micro-batch row j of <paramref name="micro"/> into row rows[j] of <paramref name="full"/>.</summary>
    public void ScatterRows(ReadOnlySpan<int> rows, float[] micro, float[] full)
    {
        for (int j = 0; j < rows.Length; j++) micro.AsSpan(j * T, T).CopyTo(full.AsSpan(rows[j] * T));
    }

    /// <summary>The given rows of <paramref name="full"/>, in order, as a new [rows, T] array.</summary>
    public T1[] Gather<T1>(ReadOnlySpan<int> rows, T1[] full)
    {
        var result = new T1[rows.Length * T];
        for (int j = 0; j < rows.Length; j++) full.AsSpan(rows[j] * T, T).CopyTo(result.AsSpan(j * T));
        return result;
    }
}
