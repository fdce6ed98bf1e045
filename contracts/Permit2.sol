// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @notice ERC-1271: how a contract wallet says a signature is its own.
interface IERC1271 {
    function isValidSignature(bytes32 digest, bytes memory signature) external view returns (bytes4);
}

/// @title Permit2
/// @notice The signature-transfer part of Uniswap's Permit2 that the x402
/// `upto` (and `exact` Permit2) schemes use, for Farthing's local chains.
/// @dev A token owner approves this contract once; after that any transfer of
/// theirs needs their EIP-712 signature over (token, maximum amount, spender,
/// nonce, deadline), optionally with a witness struct the spender adds to the
/// signed message. Nonces are unordered: a bitmap per owner, each bit spent
/// once. Signatures are ECDSA (65 bytes, or the 64-byte compact form) for an
/// account without code and ERC-1271 for a contract wallet. No allowance
/// transfers: only what x402 needs. The external functions, events, errors
/// and type strings are Permit2's (the canonical contract at
/// 0x000000000022D473030F116dDEE9F6B43aC78BA3), so clients and facilitators
/// written for it work unchanged. Written for Farthing; it shares facts with
/// Permit2, not code. The domain separator is computed on each call (no
/// immutables), so the runtime code can be placed at the canonical address.
contract Permit2 {
    // ---------------------------------------------------------------- types

    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    // ---------------------------------------------------------------- constants

    bytes32 private constant EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)");

    bytes32 private constant NAME_HASH = keccak256("Permit2");

    bytes32 public constant TOKEN_PERMISSIONS_TYPEHASH = keccak256("TokenPermissions(address token,uint256 amount)");

    bytes32 public constant PERMIT_TRANSFER_FROM_TYPEHASH = keccak256(
        "PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline)TokenPermissions(address token,uint256 amount)"
    );

    /// @dev The start of a witness transfer's type string; the spender supplies the rest.
    string private constant PERMIT_WITNESS_TRANSFER_FROM_STUB =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";

    uint256 private constant SECP256K1_HALF_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    // ---------------------------------------------------------------- state

    /// @notice owner => word position => bitmap of spent nonces.
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    // ---------------------------------------------------------------- events and errors

    event UnorderedNonceInvalidation(address indexed owner, uint256 word, uint256 mask);

    error SignatureExpired(uint256 signatureDeadline);
    error InvalidNonce();
    error InvalidAmount(uint256 maxAmount);
    error InvalidSignatureLength();
    error InvalidSignature();
    error InvalidSigner();
    error InvalidContractSignature();
    error TransferFailed();

    // ---------------------------------------------------------------- EIP-712

    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(EIP712_DOMAIN_TYPEHASH, NAME_HASH, block.chainid, address(this)));
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
    }

    function _permissionsHash(TokenPermissions calldata permitted) private pure returns (bytes32) {
        return keccak256(abi.encode(TOKEN_PERMISSIONS_TYPEHASH, permitted.token, permitted.amount));
    }

    // ---------------------------------------------------------------- signature transfers

    /// @notice Move `requestedAmount` of the permitted token from `owner` to
    /// `transferDetails.to`, on `owner`'s signature naming the caller as spender.
    function permitTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(
                PERMIT_TRANSFER_FROM_TYPEHASH, _permissionsHash(permit.permitted), msg.sender, permit.nonce, permit.deadline
            )
        );
        _transfer(permit, transferDetails, owner, structHash, signature);
    }

    /// @notice As `permitTransferFrom`, with a witness the caller adds to the
    /// signed message: `witness` is the witness struct's hash and
    /// `witnessTypeString` the rest of the type string after the stub (the
    /// witness member, then every referenced type in order).
    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        bytes32 typeHash = keccak256(abi.encodePacked(PERMIT_WITNESS_TRANSFER_FROM_STUB, witnessTypeString));
        bytes32 structHash = keccak256(
            abi.encode(
                typeHash, _permissionsHash(permit.permitted), msg.sender, permit.nonce, permit.deadline, witness
            )
        );
        _transfer(permit, transferDetails, owner, structHash, signature);
    }

    function _transfer(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 structHash,
        bytes calldata signature
    ) private {
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        if (transferDetails.requestedAmount > permit.permitted.amount) {
            revert InvalidAmount(permit.permitted.amount);
        }
        _useUnorderedNonce(owner, permit.nonce);
        _verify(signature, _digest(structHash), owner);
        _safeTransferFrom(permit.permitted.token, owner, transferDetails.to, transferDetails.requestedAmount);
    }

    // ---------------------------------------------------------------- nonces

    /// @notice Spend the nonces set in `mask` in word `wordPos` of the caller's bitmap.
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit UnorderedNonceInvalidation(msg.sender, wordPos, mask);
    }

    function _useUnorderedNonce(address owner, uint256 nonce) private {
        uint256 wordPos = nonce >> 8;
        uint256 bit = uint256(1) << (nonce & 0xff);
        uint256 word = nonceBitmap[owner][wordPos];
        if (word & bit != 0) revert InvalidNonce();
        nonceBitmap[owner][wordPos] = word | bit;
    }

    // ---------------------------------------------------------------- signatures

    /// @dev ECDSA for an account without code (65 bytes r,s,v or 64 bytes
    /// r,vs; high s refused), ERC-1271 for a contract wallet.
    function _verify(bytes calldata signature, bytes32 digest, address claimedSigner) private view {
        if (claimedSigner.code.length > 0) {
            (bool ok, bytes memory result) =
                claimedSigner.staticcall(abi.encodeCall(IERC1271.isValidSignature, (digest, signature)));
            if (
                !ok || result.length < 32
                    || abi.decode(result, (bytes32)) != bytes32(IERC1271.isValidSignature.selector)
            ) {
                revert InvalidContractSignature();
            }
            return;
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            r = bytes32(signature[0:32]);
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
        } else if (signature.length == 64) {
            bytes32 vs;
            r = bytes32(signature[0:32]);
            vs = bytes32(signature[32:64]);
            s = vs & bytes32(0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff);
            v = uint8(uint256(vs >> 255)) + 27;
        } else {
            revert InvalidSignatureLength();
        }
        if (uint256(s) > SECP256K1_HALF_ORDER) revert InvalidSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
        if (signer != claimedSigner) revert InvalidSigner();
    }

    // ---------------------------------------------------------------- tokens

    /// @dev transferFrom that accepts tokens returning nothing and refuses
    /// those returning false, or an address with no code; a token's revert is passed on.
    function _safeTransferFrom(address token, address from, address to, uint256 amount) private {
        if (token.code.length == 0) revert TransferFailed();
        (bool ok, bytes memory result) =
            token.call(abi.encodeWithSelector(bytes4(0x23b872dd), from, to, amount));
        if (!ok) {
            // the token's own reason (an insufficient balance or allowance) reaches the caller
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
        if (result.length != 0 && (result.length < 32 || !abi.decode(result, (bool)))) {
            revert TransferFailed();
        }
    }
}
