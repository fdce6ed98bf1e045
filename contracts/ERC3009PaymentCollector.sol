// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

import {AuthCaptureEscrow} from "./AuthCaptureEscrow.sol";

/// @notice The EIP-3009 pull (FiatToken v2.2 and our Stablecoin have it) and a transfer.
interface IReceiveWithAuthorization {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external;

    function transfer(address to, uint256 value) external returns (bool);
}

/// @notice Multicall3's `tryAggregate`: a neutral sender for ERC-6492 preparation calls.
interface ITryAggregate {
    struct Call {
        address target;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function tryAggregate(bool requireSuccess, Call[] calldata calls) external returns (Result[] memory);
}

/// @title ERC3009PaymentCollector
/// @notice Collects a payment for the AuthCaptureEscrow with the payer's EIP-3009
/// `ReceiveWithAuthorization`, signed to this contract.
/// @dev Written for Farthing against the public ABI of the commerce-payments
/// collector of the same name. The authorization is for the whole
/// `paymentInfo.maxAmount`, valid from 0 until `preApprovalExpiry`, with the
/// nonce `escrow.getHash(paymentInfo with payer = 0)` (the x402 spec's
/// `signatureNonce`): one signature fits one payment on one chain and escrow,
/// and the token's used-nonce check makes it single-use. Anything above the
/// collected `amount` goes straight back to the payer; `amount` goes to the
/// operator's token store. Only the escrow may call `collectTokens`.
///
/// `collectorData` is the payer's signature. An ERC-6492 envelope (a wallet not
/// deployed yet) is unwrapped here and its preparation call run through
/// Multicall3, so this contract is never the sender of arbitrary calls.
///
/// The escrow and Multicall3 addresses are immutables (runtime code): a dev
/// chain places this contract by running its constructor read-only and
/// copying the result to the canonical address.
contract ERC3009PaymentCollector {
    bytes32 public constant ERC6492_MAGIC_VALUE = 0x6492649264926492649264926492649264926492649264926492649264926492;
    /// @dev 0 = Payment, as the escrow's collector kinds number them.
    uint8 public constant collectorType = 0;

    AuthCaptureEscrow public immutable authCaptureEscrow;
    ITryAggregate public immutable multicall3;

    error OnlyAuthCaptureEscrow();
    error SafeERC20FailedOperation(address token);

    constructor(address authCaptureEscrow_, address multicall3_) {
        authCaptureEscrow = AuthCaptureEscrow(authCaptureEscrow_);
        multicall3 = ITryAggregate(multicall3_);
    }

    function collectTokens(
        AuthCaptureEscrow.PaymentInfo calldata paymentInfo,
        address tokenStore,
        uint256 amount,
        bytes calldata collectorData
    ) external {
        if (msg.sender != address(authCaptureEscrow)) revert OnlyAuthCaptureEscrow();
        bytes memory signature = _unwrapERC6492(collectorData);

        AuthCaptureEscrow.PaymentInfo memory payerAgnostic = paymentInfo;
        payerAgnostic.payer = address(0);
        bytes32 nonce = authCaptureEscrow.getHash(payerAgnostic);

        address token = paymentInfo.token;
        IReceiveWithAuthorization(token).receiveWithAuthorization(
            paymentInfo.payer,
            address(this),
            paymentInfo.maxAmount,
            0,
            paymentInfo.preApprovalExpiry,
            nonce,
            signature
        );
        uint256 excess = paymentInfo.maxAmount - amount; // the escrow checked amount <= maxAmount
        if (excess > 0) _safeTransfer(token, paymentInfo.payer, excess);
        _safeTransfer(token, tokenStore, amount);
    }

    function _safeTransfer(address token, address to, uint256 value) private {
        (bool ok, bytes memory data) = token.call(abi.encodeCall(IReceiveWithAuthorization.transfer, (to, value)));
        // A token's own refusal ("transfer amount exceeds ...") is the clearest reason: pass it on.
        if (!ok && data.length > 0) {
            assembly ("memory-safe") {
                revert(add(data, 32), mload(data))
            }
        }
        if (!ok || (data.length != 0 && !abi.decode(data, (bool))) || (data.length == 0 && token.code.length == 0)) {
            revert SafeERC20FailedOperation(token);
        }
    }

    /// @dev ERC-6492: `abi.encode(address factory, bytes factoryCalldata, bytes signature) ++ magic`.
    function _unwrapERC6492(bytes calldata data) private returns (bytes memory) {
        if (data.length < 32 || bytes32(data[data.length - 32:]) != ERC6492_MAGIC_VALUE) return data;
        (address target, bytes memory prepareData, bytes memory inner) =
            abi.decode(data[:data.length - 32], (address, bytes, bytes));
        ITryAggregate.Call[] memory calls = new ITryAggregate.Call[](1);
        calls[0] = ITryAggregate.Call(target, prepareData);
        multicall3.tryAggregate(false, calls);
        return inner;
    }
}
