namespace ArcherIlgpu.Rl.Training;

/// <summary>
/// The host-side tensors of one training step (uploaded once into <see cref="DeviceStepTensors"/>), all [Rows, T] row-major over the kept rollouts. Row i is
/// prompt ++ response left-aligned: position t predicts token t+1, so the response's k-th token is the
/// target at position |prompt| − 1 + k, where the mask is 1 (every generated token, the end token
/// included); prompt and padding positions have mask 0.
/// </summary>
internal sealed class StepTensors
{
    public int Rows, T, GroupSize, ValidTokens;
    public int Groups => Rows / GroupSize;
    public int[] Inputs = [], Targets = [];
    public float[] Mask = [], RolloutLogProbs = [];
    /// <summary>The old policy's log-probs and entropies, downloaded once per step for the metrics (the update reads the device copies).</summary>
    public float[] OldLogProbs = [], OldEntropies = [];
    /// <summary>[Rows] each response's reward; the advantages are computed from them on the device (<see cref="DeviceStepTensors.Load"/>).</summary>
    public float[] RowRewards = [];

    public static StepTensors Build(RolloutBatch batch, int padToken)
    {
        var kept = batch.Kept;
        int R = kept.Count;
        int T = kept.Max(r => r.PromptTokens.Length + r.ResponseTokens.Length) - 1;
        var s = new StepTensors { Rows = R, T = T, GroupSize = batch.GroupSize };
        int n = R * T;
        s.Inputs = new int[n]; s.Targets = new int[n];
        Array.Fill(s.Inputs, padToken); Array.Fill(s.Targets, padToken);
        s.Mask = new float[n]; s.RolloutLogProbs = new float[n];
        s.OldLogProbs = new float[n]; s.OldEntropies = new float[n];
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
        return s;
    }
}
