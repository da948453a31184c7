namespace ArcherIlgpu.Rl.Tests.Reference;

/// <summary>
/// Plain float64 forward of the policy loss, written from archer-spec.md §2 and §4 independently of the
/// float32 implementation: per token with Math.Min/Max, then each aggregation from its definition.
/// Only the value; gradients are checked against its central finite differences.
/// </summary>
public sealed class PolicyLossReference
{
    public int Rows, T;
    public double[] Old = [], Ref = [], Adv = [], Mask = [], ClipLow = [], ClipHigh = [], PolicyWeight = [], KlWeight = [];
    public byte[] Classes = [];
    public double C = 10, LogRatioClamp = 20, KlDeltaClamp = 20, KlValueClamp = 10;
    public LossAggregation Aggregation = LossAggregation.SeqMeanTokenMean;
    public KlAggregation KlMode = KlAggregation.PerClassMean;
    public bool UseKl = true;
    public double? Divisor;
    public double TokenSumNormalizer = 1;

    public double TokenPolicyLoss(int n, double logp)
    {
        double r = Math.Exp(Math.Max(-LogRatioClamp, Math.Min(LogRatioClamp, logp - Old[n])));
        double a = Adv[n];
        double l1 = -a * r;
        double l2 = -a * Math.Max(1 - ClipLow[n], Math.Min(1 + ClipHigh[n], r));
        double lc = Math.Max(l1, l2);
        return a < 0 ? Math.Min(lc, -a * C) : lc;
    }

    public double TokenK3(int n, double logp)
    {
        double delta = Math.Max(-KlDeltaClamp, Math.Min(KlDeltaClamp, Ref[n] - logp));
        double k = Math.Exp(delta) - delta - 1;
        return Math.Max(-KlValueClamp, Math.Min(KlValueClamp, k));
    }

    bool IsHigh(int n) => Classes.Length > 0 && Classes[n] == TokenClass.High;

    public double Loss(double[] logp)
    {
        double divisor = Divisor ?? Rows;
        double pg = 0, kl = 0;
        // Policy term.
        if (Aggregation == LossAggregation.TokenMean)
        {
            double num = 0, den = 0;
            for (int n = 0; n < Rows * T; n++)
                if (Mask[n] > 0) { num += Mask[n] * PolicyWeight[n] * TokenPolicyLoss(n, logp[n]); den += Mask[n]; }
            pg = num / (den + 1e-8);
        }
        else
        {
            for (int i = 0; i < Rows; i++)
            {
                double num = 0, den = 0;
                for (int t = 0; t < T; t++)
                {
                    int n = i * T + t;
                    if (Mask[n] > 0) { num += Mask[n] * PolicyWeight[n] * TokenPolicyLoss(n, logp[n]); den += Mask[n]; }
                }
                pg += Aggregation == LossAggregation.SeqMeanTokenMean ? num / (den + 1e-8) : num / TokenSumNormalizer;
            }
            pg /= divisor;
        }
        if (!UseKl) return pg;
        // KL term.
        if (KlMode == KlAggregation.PerClassMean)
        {
            for (int i = 0; i < Rows; i++)
            {
                double lowSum = 0, lowCount = 0, highSum = 0, highCount = 0;
                for (int t = 0; t < T; t++)
                {
                    int n = i * T + t;
                    if (!(Mask[n] > 0)) continue;
                    double v = Mask[n] * KlWeight[n] * TokenK3(n, logp[n]);
                    if (IsHigh(n)) { highSum += v; highCount += Mask[n]; } else { lowSum += v; lowCount += Mask[n]; }
                }
                kl += lowSum / (lowCount + 1e-8) + highSum / (highCount + 1e-8);
            }
            kl /= divisor;
        }
        else
        {
            // Same aggregation as the policy term, with β·k3 in place of w·L.
            double num = 0, den = 0, sum = 0;
            for (int i = 0; i < Rows; i++)
            {
                double rn = 0, rd = 0;
                for (int t = 0; t < T; t++)
                {
                    int n = i * T + t;
                    if (!(Mask[n] > 0)) continue;
                    double v = Mask[n] * KlWeight[n] * TokenK3(n, logp[n]);
                    rn += v; rd += Mask[n];
                }
                num += rn; den += rd;
                sum += Aggregation == LossAggregation.SeqMeanTokenMean ? rn / (rd + 1e-8) : rn / TokenSumNormalizer;
            }
            kl = Aggregation == LossAggregation.TokenMean ? num / (den + 1e-8) : sum / divisor;
        }
        return pg + kl;
    }
}
