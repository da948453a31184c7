namespace ArcherIlgpu.Kernels.Tests.Reference;

/// <summary>
/// Float64 rotary position embedding written Hugging Face's way rather than pair by pair: per head,
/// out = x ⊙ [cos, cos] + rotate_half(x) ⊙ [sin, sin] with rotate_half(x) = [−x2, x1]. The backward is
/// that linear map's transpose, dx = dy ⊙ [cos, cos] + rotate_halfᵀ(dy ⊙ [sin, sin]) with
/// rotate_halfᵀ(z) = [z2, −z1]. Tables are the [maxT, D/2] float32 tables the ops take.
/// </summary>
public static class RopeReference
{
    /// <summary>qkv [N, (H + 2Hkv)·D] -> a rotated copy; value heads copied unchanged.</summary>
    public static double[] Forward(double[] qkv, int[] positions, float[] cos, float[] sin, int N, int H, int Hkv, int D)
        => Apply(qkv, positions, cos, sin, N, H, Hkv, D, transpose: false);

    /// <summary>Gradient with respect to the input of sum(dOutput ⊙ Forward(input)).</summary>
    public static double[] Backward(double[] dOutput, int[] positions, float[] cos, float[] sin, int N, int H, int Hkv, int D)
        => Apply(dOutput, positions, cos, sin, N, H, Hkv, D, transpose: true);

    static double[] Apply(double[] x, int[] positions, float[] cos, float[] sin, int N, int H, int Hkv, int D, bool transpose)
    {
        int half = D / 2, W = (H + 2 * Hkv) * D;
        var y = (double[])x.Clone();
        for (int n = 0; n < N; n++)
        {
            int p = positions[n];
            var cosFull = new double[D];
            var sinFull = new double[D];
            for (int d = 0; d < D; d++)
            {
                cosFull[d] = cos[p * half + d % half];
                sinFull[d] = sin[p * half + d % half];
            }
            for (int head = 0; head < H + Hkv; head++)
            {
                int at = n * W + head * D;
                var v = x.AsSpan(at, D).ToArray();
                double[] sinTerm;
                if (!transpose)
                {
                    var r = RotateHalf(v);
                    sinTerm = Enumerable.Range(0, D).Select(d => r[d] * sinFull[d]).ToArray();
                }
                else
                    sinTerm = RotateHalfTransposed(Enumerable.Range(0, D).Select(d => v[d] * sinFull[d]).ToArray());
                for (int d = 0; d < D; d++) y[at + d] = v[d] * cosFull[d] + sinTerm[d];
            }
        }
        return y;
    }

    /// <summary>[x1, x2] -> [−x2, x1].</summary>
    static double[] RotateHalf(double[] x)
    {
        int half = x.Length / 2;
        return [.. x[half..].Select(v => -v), .. x[..half]];
    }

    /// <summary>The transpose of RotateHalf: [z1, z2] -> [z2, −z1].</summary>
    static double[] RotateHalfTransposed(double[] z)
    {
        int half = z.Length / 2;
        return [.. z[half..], .. z[..half].Select(v => -v)];
    }
}
