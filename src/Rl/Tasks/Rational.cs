using System.Globalization;
using System.Numerics;

namespace ArcherIlgpu.Rl.Tasks;

/// <summary>
/// An exact fraction over <see cref="BigInteger"/>, always reduced with a positive denominator, so that
/// verifiers compare answers without rounding (8/(3-8/3) is exactly 24, 0.1+0.2 is exactly 3/10).
/// </summary>
public readonly struct Rational : IEquatable<Rational>, IComparable<Rational>
{
    public BigInteger Numerator { get; }
    public BigInteger Denominator { get; }

    public Rational(BigInteger numerator, BigInteger denominator)
    {
        if (denominator.IsZero) throw new DivideByZeroException("rational with a zero denominator");
        if (denominator.Sign < 0) { numerator = -numerator; denominator = -denominator; }
        var g = BigInteger.GreatestCommonDivisor(numerator, denominator);
        if (!g.IsOne && !g.IsZero) { numerator /= g; denominator /= g; }
        if (numerator.IsZero) denominator = BigInteger.One;
        Numerator = numerator;
        Denominator = denominator;
    }

    public static Rational FromInteger(BigInteger value) => new(value, BigInteger.One);
    public static readonly Rational Zero = FromInteger(0);

    public bool IsInteger => Denominator.IsOne;
    // default(Rational) has a zero denominator; treat it as zero everywhere.
    BigInteger Den => Denominator.IsZero ? BigInteger.One : Denominator;

    public static Rational operator +(Rational a, Rational b) => new(a.Numerator * b.Den + b.Numerator * a.Den, a.Den * b.Den);
    public static Rational operator -(Rational a, Rational b) => new(a.Numerator * b.Den - b.Numerator * a.Den, a.Den * b.Den);
    public static Rational operator *(Rational a, Rational b) => new(a.Numerator * b.Numerator, a.Den * b.Den);
    public static Rational operator -(Rational a) => new(-a.Numerator, a.Den);

    /// <summary>Division; throws <see cref="DivideByZeroException"/> when b is zero.</summary>
    public static Rational operator /(Rational a, Rational b)
    {
        if (b.Numerator.IsZero) throw new DivideByZeroException("division by zero");
        return new(a.Numerator * b.Den, a.Den * b.Numerator);
    }

    public static implicit operator Rational(long value) => FromInteger(value);

    public bool Equals(Rational other) => Numerator == other.Numerator && Den == other.Den;
    public override bool Equals(object? obj) => obj is Rational r && Equals(r);
    public override int GetHashCode() => HashCode.Combine(Numerator, Den);
    public int CompareTo(Rational other) => (Numerator * other.Den).CompareTo(other.Numerator * Den);
    public static bool operator ==(Rational a, Rational b) => a.Equals(b);
    public static bool operator !=(Rational a, Rational b) => !a.Equals(b);

    public double ToDouble() => (double)Numerator / (double)Den;

    /// <summary>"7", "-3/4": integers without a denominator.</summary>
    public override string ToString() =>
        Den.IsOne ? Numerator.ToString(CultureInfo.InvariantCulture)
                  : $"{Numerator.ToString(CultureInfo.InvariantCulture)}/{Den.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>
    /// Parses a plain number written the ways answers are written: "42", "-42", "+42", "1,234,567",
    /// "3.25", "-.5", "3/4", "-3/4", "1e3" is NOT accepted (ambiguous in answers). Surrounding
    /// whitespace is ignored. Returns false for anything else.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<char> text, out Rational value)
    {
        value = Zero;
        text = text.Trim();
        if (text.IsEmpty) return false;
        int slash = text.IndexOf('/');
        if (slash >= 0)
        {
            if (!TryParseDecimal(text[..slash], out var num) || !TryParseDecimal(text[(slash + 1)..], out var den)) return false;
            if (den.Numerator.IsZero) return false;
            value = num / den;
            return true;
        }
        return TryParseDecimal(text, out value);
    }

    static bool TryParseDecimal(ReadOnlySpan<char> text, out Rational value)
    {
        value = Zero;
        text = text.Trim();
        bool negative = false;
        if (text.Length > 0 && (text[0] == '-' || text[0] == '+' || text[0] == '\u2212'))
        {
            negative = text[0] != '+';
            text = text[1..].TrimStart();
        }
        if (text.IsEmpty) return false;
        BigInteger digits = BigInteger.Zero;
        BigInteger scale = BigInteger.One;
        bool seenDigit = false, seenPoint = false;
        int lastComma = -1, digitsSinceComma = 0;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c >= '0' && c <= '9')
            {
                digits = digits * 10 + (c - '0');
                if (seenPoint) scale *= 10;
                seenDigit = true;
                digitsSinceComma++;
            }
            else if (c == '.' && !seenPoint)
            {
                if (lastComma >= 0 && digitsSinceComma != 3) return false;
                seenPoint = true;
            }
            else if (c == ',' && !seenPoint)
            {
                // Thousands separators only: "1,234" but not "1,2" or ",5".
                if (!seenDigit || (lastComma >= 0 && digitsSinceComma != 3)) return false;
                lastComma = i;
                digitsSinceComma = 0;
            }
            else return false;
        }
        if (!seenDigit) return false;
        if (lastComma >= 0 && !seenPoint && digitsSinceComma != 3) return false;
        value = new Rational(negative ? -digits : digits, scale);
        return true;
    }
}
