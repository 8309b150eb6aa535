// The STUN target is being built (issues #13, #14); its code lands with it.
