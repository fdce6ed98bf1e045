// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @title SmartAccount
/// @notice A minimal contract wallet with one owner key that answers ERC-1271.
/// @dev Farthing's own smart account, used three ways:
///  - deployed by SmartAccountFactory with CREATE2 (the owner is set by the
///    constructor);
///  - counterfactual: its address is known before it exists, and a payer signs
///    with an ERC-6492 wrapper that names the factory call deploying it;
///  - as an EIP-7702 delegate: an EOA whose code is 0xef0100 || this contract's
///    address runs this code over its own storage, where no constructor ever
///    ran, so the owner slot is empty and the EOA's own key is the owner.
/// isValidSignature checks a plain ECDSA signature (65 bytes, low s, v 27 or 28)
/// over the digest it is given, so it never reverts on a malformed signature:
/// it answers "no" (0xffffffff). Written for Farthing's tests and dev chains.
contract SmartAccount {
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;
    bytes4 private constant ERC1271_REFUSED = 0xffffffff;
    uint256 private constant SECP256K1_HALF_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice The key that signs for this account; zero means the account itself (EIP-7702).
    address public owner;

    event Executed(address indexed to, uint256 value, bytes data);

    constructor(address accountOwner) {
        owner = accountOwner;
    }

    receive() external payable {}

    /// @notice Who signs for this account: the owner, or under EIP-7702 the EOA itself.
    function signer() public view returns (address) {
        address current = owner;
        return current == address(0) ? address(this) : current;
    }

    /// @notice ERC-1271: the magic value if `signature` over `digest` is the signer's.
    function isValidSignature(bytes32 digest, bytes calldata signature) external view returns (bytes4) {
        return _recover(digest, signature) == signer() ? ERC1271_MAGIC : ERC1271_REFUSED;
    }

    /// @notice Make a call as this account; only its signer (or the account itself) may.
    function execute(address to, uint256 value, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == signer() || msg.sender == address(this), "SmartAccount: not the owner");
        (bool ok, bytes memory result) = to.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
        emit Executed(to, value, data);
        return result;
    }

    /// @dev The signer of a well-formed signature, or address(0) for anything else.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) {
            return address(0);
        }
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > SECP256K1_HALF_ORDER || (v != 27 && v != 28)) {
            return address(0);
        }
        return ecrecover(digest, v, r, s);
    }
}
