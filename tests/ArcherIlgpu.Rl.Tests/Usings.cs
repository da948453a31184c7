global using Xunit;
global using ArcherIlgpu.Rl.Losses;
