import LQQuant
import Testing

/// The scale-format table: each row's facts, and the names every configuration round-trips through.
struct FormatTableTests {
    @Test func eachRowStatesItsFacts() {
        let fp32 = ScaleFormat.fp32.traits, dq8 = ScaleFormat.dynamic8.traits
        let uint = ScaleFormat.uint(bits: 3, groupSize: 16, dtype: .bf16).traits
        #expect(fp32.bits == 32 && fp32.groupSize == nil && fp32.dtype == .fp32 && fp32.name == "fp32")
        #expect(fp32.layout == .perBlock && fp32.bitsandbytes && fp32.map == nil)
        // bitsandbytes' nested_blocksize is its 8-bit blockwise quantizer's block.
        #expect(dq8.bits == 8 && dq8.groupSize == 256 && dq8.groupSize == DynamicQuantizer.blockSize && dq8.dtype == .fp32)
        #expect(dq8.name == "dq8" && dq8.layout == .doubleQuantized && dq8.bitsandbytes && dq8.map == "bitsandbytes-dynamic")
        #expect(uint.bits == 3 && uint.groupSize == 16 && uint.dtype == .bf16 && uint.name == "s3g16-bf16")
        #expect(uint.layout == .doubleQuantized && !uint.bitsandbytes && uint.map == nil)
    }

    @Test func costsFollowFromTheRow() {
        // b + s/B0 + d/(B0·B1): 3 + 4/32 + 16/(32·64) for nf3-b32-s4g64-fp16.
        let c = QuantConfig(bits: 3, blockSize: 32, scale: .uint(bits: 4, groupSize: 64, dtype: .fp16))
        #expect(c.bitsPerParameter == 3 + 0.125 + 0.0078125)
        #expect(QuantConfig.plain(bits: 2, blockSize: 16).bitsPerParameter == 4)
        #expect(QuantConfig(bits: 4, blockSize: 32, scale: .dynamic8).bitsPerParameter == 4 + 0.25 + 32.0 / 8192)
    }

    @Test func onlyNF4InBlocksOf64WithItsScalesIsBitsandbytes() {
        #expect(QuantConfig.nf4DoubleQuant.isBitsandbytesCompatible && QuantConfig.plain(bits: 4).isBitsandbytesCompatible)
        #expect(!QuantConfig.plain(bits: 4, blockSize: 32).isBitsandbytesCompatible)
        #expect(!QuantConfig(bits: 3, blockSize: 64, scale: .dynamic8).isBitsandbytesCompatible)
        #expect(!QuantConfig.qlora(bits: 4).isBitsandbytesCompatible)
    }

    @Test func namesRoundTripAndMalformedOnesAreRefused() {
        let all = QuantConfig.lqloraGrid + [.nf4DoubleQuant, .plain(bits: 3), .plain(bits: 8, blockSize: 128),
                                            QuantConfig(bits: 2, blockSize: 32, scale: .dynamic8)]
        for c in all { #expect(QuantConfig.parse(c.name) == c, "\(c.name)") }
        #expect(QuantConfig.qlora(bits: 3).name == "nf3-b64-s8g256-fp32")
        #expect(QuantConfig.qlora(bits: 2, blockSize: 32) == QuantConfig.parse("nf2-b32-s8g256-fp32"))
        for bad in ["nf4-b64", "nf4-b64-dq9", "nf4-b64-s8g256", "nf4-b64-dq8-fp32", "nf4-b64-s8g-fp32", "nf4-b64-s8g256-fp8",
                    "nf4-b64-fp32-x-y", "q4-b64-fp32"] {
            #expect(QuantConfig.parse(bad) == nil, "\(bad)")
        }
        #expect(QuantConfig.parse("nf4-b64-s5g16-fp32")?.isValid == false)
        #expect(QuantConfig.parse("nf4-b64-s4g0-fp32")?.isValid == false)
        #expect(QuantConfig.parse("nf4-b64-s4g16-fp32")?.isValid == true)
    }
}
