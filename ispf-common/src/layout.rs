//! The shared types' layouts, asserted: both sides read them byte for
//! byte, so a size or alignment that moves must fail here first.

#[cfg(feature = "user")]
mod pod {
    use crate::*;
    // SAFETY: all of these are repr(C), Copy, and have no implicit padding
    // (checked by the size tests), so any byte pattern is a valid value.
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for SegmentInfo {}
    unsafe impl aya::Pod for MacKey {}
    unsafe impl aya::Pod for V4Key {}
    unsafe impl aya::Pod for V6Key {}
    unsafe impl aya::Pod for DeviceVal {}
    unsafe impl aya::Pod for PolicyKey {}
    unsafe impl aya::Pod for PolicyVal {}
    unsafe impl aya::Pod for PairKey {}
    unsafe impl aya::Pod for RowEntry {}
    unsafe impl aya::Pod for PolicyRow {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtVal {}
    unsafe impl aya::Pod for CtKey4 {}
    unsafe impl aya::Pod for FlowCacheEntry {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragVal {}
    unsafe impl aya::Pod for CounterKey {}
    unsafe impl aya::Pod for CounterVal {}
    unsafe impl aya::Pod for CounterAlloc {}
    unsafe impl aya::Pod for SourceMemo {}
    unsafe impl aya::Pod for SightingMemo {}
    unsafe impl aya::Pod for FingerprintEvent {}
    unsafe impl aya::Pod for Meta {}
    unsafe impl aya::Pod for LastVerdict {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for EventStats {}
}

#[cfg(test)]
mod tests {
    use crate::*;
    use core::mem::{align_of, size_of};

    /// A size equal to the sum of the fields proves there is no implicit
    /// padding, which both `aya::Pod` and byte-exact hashing of keys need.
    #[test]
    fn layouts_are_fixed() {
        assert_eq!((size_of::<Settings>(), align_of::<Settings>()), (32, 4));
        assert_eq!(
            (size_of::<SegmentInfo>(), align_of::<SegmentInfo>()),
            (4, 1)
        );
        assert_eq!((size_of::<MacKey>(), align_of::<MacKey>()), (8, 1));
        assert_eq!((size_of::<V4Key>(), align_of::<V4Key>()), (8, 1));
        assert_eq!((size_of::<V6Key>(), align_of::<V6Key>()), (20, 1));
        assert_eq!((size_of::<DeviceVal>(), align_of::<DeviceVal>()), (32, 4));
        assert_eq!((size_of::<PolicyKey>(), align_of::<PolicyKey>()), (12, 4));
        assert_eq!((size_of::<PolicyVal>(), align_of::<PolicyVal>()), (8, 4));
        assert_eq!((size_of::<PairKey>(), align_of::<PairKey>()), (8, 2));
        assert_eq!((size_of::<RowEntry>(), align_of::<RowEntry>()), (16, 8));
        assert_eq!((size_of::<PolicyRow>(), align_of::<PolicyRow>()), (112, 8));
        assert_eq!((size_of::<CtKey>(), align_of::<CtKey>()), (40, 8));
        assert_eq!((size_of::<CtVal>(), align_of::<CtVal>()), (56, 8));
        assert_eq!((size_of::<CtKey4>(), align_of::<CtKey4>()), (16, 8));
        assert_eq!(
            (size_of::<FlowCacheEntry>(), align_of::<FlowCacheEntry>()),
            (96, 8)
        );
        assert!(FLOW_CACHE_ENTRIES.is_power_of_two() && CT_GENERATIONS.is_power_of_two());
        assert_eq!((size_of::<FragKey>(), align_of::<FragKey>()), (40, 4));
        assert_eq!((size_of::<FragVal>(), align_of::<FragVal>()), (16, 8));
        assert_eq!((size_of::<CounterKey>(), align_of::<CounterKey>()), (12, 4));
        assert_eq!((size_of::<Event>(), align_of::<Event>()), (80, 8));
        assert_eq!((size_of::<EventStats>(), align_of::<EventStats>()), (72, 8));
        assert_eq!((size_of::<CounterVal>(), align_of::<CounterVal>()), (16, 8));
        assert_eq!(
            (size_of::<CounterAlloc>(), align_of::<CounterAlloc>()),
            (8, 4)
        );
        assert_eq!((size_of::<Meta>(), align_of::<Meta>()), (48, 8));
        assert_eq!((size_of::<SourceMemo>(), align_of::<SourceMemo>()), (32, 8));
        assert!(SOURCE_MEMO_ENTRIES.is_power_of_two());
        assert!(SIGHTING_MEMO_ENTRIES.is_power_of_two());
        assert_eq!(
            (size_of::<SightingMemo>(), align_of::<SightingMemo>()),
            (40, 8)
        );
        assert_eq!(size_of::<FingerprintEvent>(), 32 + FINGERPRINT_BYTES);
        assert_eq!(core::mem::offset_of!(Event, kind), EVENT_KIND_OFFSET);
        assert_eq!(
            core::mem::offset_of!(FingerprintEvent, kind),
            EVENT_KIND_OFFSET
        );
        assert_eq!(
            (size_of::<LastVerdict>(), align_of::<LastVerdict>()),
            (24, 8)
        );
    }

    #[test]
    fn l2_fingerprint_separates_mac_and_vlan() {
        let a = [2, 0, 0, 0, 0, 1];
        let b = [2, 0, 0, 0, 0, 2];
        assert_ne!(l2_fingerprint(&a, 0), 0, "0 must mean no sender");
        assert_ne!(l2_fingerprint(&a, 130), l2_fingerprint(&a, 140));
        assert_ne!(l2_fingerprint(&a, 130), l2_fingerprint(&b, 130));
        assert_eq!(l2_fingerprint(&a, 130), l2_fingerprint(&a, 130 | 0xf000));
        assert_eq!(l2_fingerprint(&[0xff; 6], 0xfff), u64::MAX >> 4 | L2_VALID);
    }
}
